//! Settings with where they came from: an engine's own environment variables win over the project file, which
//! wins over the user's file. The front end reads its files; this crate knows which variables each engine reads.

use std::fmt;
use std::path::PathBuf;

use berth_core::provider::{ConnectSettings, SettingKey, Shared};

use crate::EngineKind;

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// An environment variable.
    Environment(&'static str),
    /// The project file.
    Project(PathBuf),
    /// The user's config file.
    User(PathBuf),
    /// Found by looking (a socket, an interpreter).
    Detected(String),
    /// berth's built-in default.
    Default,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Environment(var) => write!(f, "from {var}"),
            Source::Project(path) | Source::User(path) => write!(f, "from {}", path.display()),
            Source::Detected(what) => write!(f, "detected: {what}"),
            Source::Default => f.write_str("default"),
        }
    }
}

/// A value and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// Its source.
    pub source: Source,
}

/// The `engine:` settings of a front end's files (berth's CLI: the project's `berth.yaml`, then the user's
/// file), each with the file it came from. `Sync`, so a connection can be opened from a spawned task (a workflow
/// run opens its engine from the first image task that builds).
pub trait FileSettings: Sync {
    /// The engine's name (`engine:` or `engine.name:`), `auto` included.
    fn engine_name(&self) -> Option<Setting>;
    /// `engine.<engine>.<key>`.
    fn engine_setting(&self, engine: &str, key: &str) -> Option<Setting>;
}

impl Setting {
    /// The value of environment variable `name`, unless unset or blank.
    pub fn from_env(name: &'static str) -> Option<Setting> {
        std::env::var(name)
            .ok()
            .filter(|v| !v.trim().is_empty())
            .map(|value| Setting {
                value,
                source: Source::Environment(name),
            })
    }
}

/// `key` of `kind`: its environment variable, else the files.
pub fn setting(kind: EngineKind, key: &SettingKey, files: &dyn FileSettings) -> Option<Setting> {
    key.env
        .and_then(Setting::from_env)
        .or_else(|| files.engine_setting(kind.name(), key.key))
}

/// Where the user named `kind`'s address (`DOCKER_HOST`, else `engine.docker.host` in a file), and the value;
/// `None` when nobody did (the engine's default place). An address someone named is never passed over.
pub fn named(kind: EngineKind, files: &dyn FileSettings) -> Option<Setting> {
    setting(kind, &kind.info().address, files)
}

/// Every setting of `kind` someone set, with `shared` services, for connecting.
pub fn connect_settings(
    kind: EngineKind,
    files: &dyn FileSettings,
    shared: Shared,
) -> ConnectSettings {
    kind.info()
        .settings()
        .filter_map(|key| Some((key.key, setting(kind, key, files)?.value)))
        .fold(ConnectSettings::default().sharing(shared), |s, (k, v)| {
            s.set(k, v)
        })
}
