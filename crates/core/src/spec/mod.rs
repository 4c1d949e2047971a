//! The image spec: flytekit's `ImageSpec` fields, read from YAML.
//!
//! A spec file's keys are flytekit `ImageSpec` field names with the same meaning. berth keeps the values exactly
//! as YAML typed them (the tag hashes them that way) and also reads them into typed fields for building.
//! Relative paths resolve against the spec file's folder.

mod check;
mod fields;
mod flytekit;
mod load;

use std::path::PathBuf;

use berth_digest::{DigestError, SourceTree};

pub use check::check_buildable;
pub use fields::{Field, FIELDS};
pub use flytekit::load_flytekit_json;
pub use load::{load_inline_spec, load_spec, load_spec_str, load_spec_with, SpecDefaults};

use crate::yaml::Node;

/// flytekit's default base image, used when a spec names none.
pub const DEFAULT_BASE_IMAGE: &str = "debian:bookworm-slim";

/// An image spec read from a YAML file.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    /// The spec file (absolute).
    pub file: PathBuf,
    /// The folder relative paths resolve against.
    pub dir: PathBuf,
    /// The fields as written, in file order, typed as PyYAML types them (nulls included).
    pub raw: Vec<(Field, Node)>,
    /// Image name (repository path without registry), lowercased as flytekit does. Default `flytekit`.
    pub name: String,
    /// Python version for micromamba to install, e.g. "3.11".
    pub python_version: Option<String>,
    /// Source tree to copy into `/root` (absolute), with `source_copy_mode: 2` (ALL), or LOADED_MODULES from a
    /// flytekit process (then `source_files` lists the files). `None` when nothing is copied, also when a flytekit
    /// spec names a root with NO_COPY (its path then stays in `raw` and is hashed as written).
    pub source_root: Option<PathBuf>,
    /// With `source_root`: exactly these files (absolute), as the flytekit process that imported them listed them
    /// (LOADED_MODULES); `None`: every file under the root minus the ignored ones (ALL).
    pub source_files: Option<Vec<PathBuf>>,
    /// Environment variables, in order, values as Python's `str()` would print them.
    pub env: Vec<(String, String)>,
    /// Registry (and path) to push to, lowercased.
    pub registry: Option<String>,
    /// Python packages (pip requirement strings).
    pub packages: Vec<String>,
    /// Conda packages.
    pub conda_packages: Vec<String>,
    /// Conda channels.
    pub conda_channels: Vec<String>,
    /// requirements.txt, uv.lock or poetry.lock (absolute).
    pub requirements: Option<PathBuf>,
    /// Debian packages.
    pub apt_packages: Vec<String>,
    /// CUDA version (flytekit's default builder refuses it; so does berth's, with the same advice).
    pub cuda: Option<String>,
    /// cuDNN version (as `cuda`).
    pub cudnn: Option<String>,
    /// The image to build on.
    pub base_image: Option<BaseImage>,
    /// Target platform, e.g. `linux/amd64` (flytekit's default when unset).
    pub platform: String,
    /// pip index URL.
    pub pip_index: Option<String>,
    /// Extra pip index URLs.
    pub pip_extra_index_url: Vec<String>,
    /// Files mounted as build secrets during package installation; never stored in a layer.
    pub pip_secret_mounts: Vec<SecretMount>,
    /// Extra arguments for the package installer, space-separated.
    pub pip_extra_args: Option<String>,
    /// Docker-style registry config (auth) file.
    pub registry_config: Option<PathBuf>,
    /// Entrypoint; `Some(vec![])` clears the base image's.
    pub entrypoint: Option<Vec<String>>,
    /// Shell commands run at the end of the build.
    pub commands: Vec<String>,
    /// Tag template with `{spec_hash}`.
    pub tag_format: Option<String>,
    /// Files and folders copied to `/root/<path>`.
    pub copy: Vec<CopyEntry>,
    /// Python interpreter in the base image to create the venv from (skips micromamba).
    pub python_exec: Option<String>,
    /// Packages installed when the task starts (not at build time).
    pub runtime_packages: Vec<String>,
    /// Builder images (`uv_image`, `micromamba_image`).
    pub builder_config: BuilderConfig,
    /// Values YAML cannot hold, by field, as Python's `repr` prints them (a flytekit spec's `source_copy_mode` is
    /// an enum member, `<CopyFileDetection.ALL: 2>`); the tag hashes these instead of `raw`.
    pub python_reprs: Vec<(Field, String)>,
}

/// What a spec builds on.
#[derive(Debug, Clone)]
pub enum BaseImage {
    /// An image reference.
    Reference(String),
    /// Another spec, built first; its image name stands in its place.
    Spec(Box<ImageSpec>),
}

/// A file mounted as a build secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretMount {
    /// The file on this machine holding the secret (absolute).
    pub source: PathBuf,
    /// Where the secret appears during the install step.
    pub target: String,
}

/// One entry of `copy`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyEntry {
    /// The path as written, relative to the spec folder, with `/` separators.
    pub relative: String,
    /// The resolved path.
    pub absolute: PathBuf,
    /// Whether it is a folder.
    pub is_dir: bool,
}

/// Images the generated Dockerfile takes tools from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuilderConfig {
    /// An image with `/uv`.
    pub uv_image: String,
    /// An image with `/usr/bin/micromamba`.
    pub micromamba_image: String,
}

/// The uv image used when `builder_config.uv_image` is not set (flytekit's pinned default).
pub const DEFAULT_UV_IMAGE: &str = "ghcr.io/astral-sh/uv:0.5.1";
/// The micromamba image used when `builder_config.micromamba_image` is not set (flytekit's pinned default).
pub const DEFAULT_MICROMAMBA_IMAGE: &str = "mambaorg/micromamba:2.0.3-debian12-slim";

impl Default for BuilderConfig {
    fn default() -> Self {
        BuilderConfig {
            uv_image: DEFAULT_UV_IMAGE.into(),
            micromamba_image: DEFAULT_MICROMAMBA_IMAGE.into(),
        }
    }
}

impl ImageSpec {
    /// The raw node of a field, if the file sets it to something other than null.
    pub fn raw_field(&self, field: Field) -> Option<&Node> {
        self.raw
            .iter()
            .find(|(f, node)| *f == field && node.value != crate::yaml::Value::Null)
            .map(|(_, node)| node)
    }

    /// The files copied from `source_root`, in flytekit's order (none when nothing is copied).
    pub fn source_tree(&self) -> std::result::Result<Option<SourceTree>, DigestError> {
        let Some(root) = &self.source_root else {
            return Ok(None);
        };
        match &self.source_files {
            Some(files) => berth_digest::list_given_files(root, files).map(Some),
            None => berth_digest::list_source_files(root).map(Some),
        }
    }

    /// The spec file's path as given to berth, for messages.
    pub fn display_path(&self) -> String {
        self.file.display().to_string()
    }
}
