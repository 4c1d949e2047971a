//! The spec's field names, in flytekit's `ImageSpec` dataclass order (the order the tag hashes them in).

use std::fmt;

macro_rules! fields {
    ($($variant:ident => $name:literal),* $(,)?) => {
        /// A field of flytekit's `ImageSpec`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[allow(missing_docs)]
        pub enum Field { $($variant),* }

        /// All fields in dataclass order.
        pub const FIELDS: &[Field] = &[$(Field::$variant),*];

        impl Field {
            /// The YAML key / Python attribute name.
            pub fn name(self) -> &'static str {
                match self { $(Field::$variant => $name),* }
            }
        }
    };
}

fields! {
    Name => "name",
    PythonVersion => "python_version",
    Builder => "builder",
    SourceRoot => "source_root",
    Env => "env",
    Registry => "registry",
    Packages => "packages",
    CondaPackages => "conda_packages",
    CondaChannels => "conda_channels",
    Requirements => "requirements",
    AptPackages => "apt_packages",
    Cuda => "cuda",
    Cudnn => "cudnn",
    BaseImage => "base_image",
    Platform => "platform",
    PipIndex => "pip_index",
    PipExtraIndexUrl => "pip_extra_index_url",
    PipSecretMounts => "pip_secret_mounts",
    PipExtraArgs => "pip_extra_args",
    RegistryConfig => "registry_config",
    Entrypoint => "entrypoint",
    Commands => "commands",
    TagFormat => "tag_format",
    SourceCopyMode => "source_copy_mode",
    Copy => "copy",
    PythonExec => "python_exec",
    RuntimePackages => "runtime_packages",
    BuilderOptions => "builder_options",
    BuilderConfig => "builder_config",
}

impl Field {
    /// The field with this YAML key.
    pub fn from_name(name: &str) -> Option<Field> {
        FIELDS.iter().copied().find(|f| f.name() == name)
    }

    /// The known field closest to a misspelt key, if one is close enough to be a likely typo.
    pub fn nearest(name: &str) -> Option<Field> {
        FIELDS
            .iter()
            .copied()
            .map(|f| (strsim::damerau_levenshtein(name, f.name()), f))
            .filter(|(d, f)| *d <= 3.max(f.name().len() / 3))
            .min_by_key(|(d, _)| *d)
            .map(|(_, f)| f)
    }

    /// Fields flytekit leaves out of the spec id (and so out of the tag).
    pub fn excluded_from_id(self) -> bool {
        matches!(
            self,
            Field::PipSecretMounts | Field::Builder | Field::RuntimePackages
        )
    }
}

impl fmt::Display for Field {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typos_suggest_the_nearest_field() {
        assert_eq!(Field::nearest("pakages"), Some(Field::Packages));
        assert_eq!(Field::nearest("apt_pacakges"), Some(Field::AptPackages));
        assert_eq!(Field::nearest("python-version"), Some(Field::PythonVersion));
        assert_eq!(Field::nearest("completely_unrelated_key"), None);
    }

    #[test]
    fn there_are_29_fields_in_dataclass_order() {
        assert_eq!(FIELDS.len(), 29);
        assert_eq!(FIELDS[0], Field::Name);
        assert_eq!(FIELDS[28], Field::BuilderConfig);
    }
}
