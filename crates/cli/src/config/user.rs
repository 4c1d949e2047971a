//! The user's config file: defaults for every project, at `$BERTH_CONFIG`, else
//! `$XDG_CONFIG_HOME/berth/config.yaml`, else `~/.config/berth/config.yaml`. Same keys as a project file's
//! settings (`engine`, `registry`, `default_image`, `python_version`); no images or tasks.

use std::path::{Path, PathBuf};

use berth_core::Result;

use super::engine::EngineSettings;
use super::file::YamlFile;
use crate::env_vars::EnvVars;

const KEYS: &[&str] = &["engine", "registry", "default_image", "python_version"];

/// The user's config file, read.
#[derive(Debug, Clone)]
pub struct UserConfig {
    /// The file.
    pub file: PathBuf,
    /// Engine name and connection settings.
    pub engine: EngineSettings,
    /// Registry for specs that name none.
    pub registry: Option<String>,
    /// The image of tasks that name none.
    pub default_image: Option<String>,
    /// Python version of flytekit's default image scheme.
    pub python_version: Option<String>,
}

impl UserConfig {
    /// Where the user's config file is looked for.
    pub fn path() -> Option<PathBuf> {
        let var = |name: &str| {
            std::env::var_os(name)
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        };
        var(EnvVars::BERTH_CONFIG)
            .or_else(|| var(EnvVars::XDG_CONFIG_HOME).map(|d| d.join("berth").join("config.yaml")))
            .or_else(|| {
                var(EnvVars::HOME).map(|h| h.join(".config").join("berth").join("config.yaml"))
            })
    }

    /// Reads the user's config file, if there is one.
    pub fn load() -> Result<Option<UserConfig>> {
        match UserConfig::path() {
            Some(path) if path.is_file() => UserConfig::read(&path).map(Some),
            _ => Ok(None),
        }
    }

    /// Reads a user config file.
    pub fn read(path: &Path) -> Result<UserConfig> {
        let file = YamlFile::read(path, KEYS)?;
        Ok(UserConfig {
            engine: EngineSettings::read(&file)?,
            registry: file.text("registry")?.map(|r| r.to_lowercase()),
            default_image: file.text("default_image")?,
            python_version: file.text("python_version")?,
            file: file.path,
        })
    }
}
