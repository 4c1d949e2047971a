//! berth's own YAML files are read by core's [`YamlFile`] (the project file, read by `berth-workflow`, uses it
//! too); the user file and the `engine:` setting read theirs through this name.

pub use berth_core::yaml::YamlFile;
