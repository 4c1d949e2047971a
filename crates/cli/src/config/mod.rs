//! Settings from files and the environment, each with where it came from: flag, environment, project file
//! (`berth.yaml`, found walking up), user file, detection, built-in default. `berth config` prints them.

pub mod default_image;
pub mod engine;
pub mod file;
pub mod project;
pub mod user;

use std::fmt;
use std::path::{Path, PathBuf};

use berth_core::{Error, Result};

use crate::env_vars::EnvVars;
pub use engine::EngineSettings;
pub use project::Project;
pub use user::UserConfig;

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

/// The project and user files for this run.
#[derive(Debug, Clone, Default)]
pub struct Config {
    /// The nearest `berth.yaml`, if any.
    pub project: Option<Project>,
    /// The user's config file, if any.
    pub user: Option<UserConfig>,
}

impl Config {
    /// Reads the project file above the current folder and the user's file.
    pub fn load() -> Result<Config> {
        let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
        Ok(Config {
            project: Project::find(&cwd)?,
            user: UserConfig::load()?,
        })
    }

    /// The first of: an environment variable, the project's value, the user's value.
    fn layered(
        &self,
        var: Option<&'static str>,
        project: impl Fn(&Project) -> Option<String>,
        user: impl Fn(&UserConfig) -> Option<String>,
    ) -> Option<Setting> {
        let from_env = var.and_then(|name| {
            std::env::var(name)
                .ok()
                .filter(|v| !v.trim().is_empty())
                .map(|value| Setting {
                    value,
                    source: Source::Environment(name),
                })
        });
        from_env
            .or_else(|| {
                let p = self.project.as_ref()?;
                project(p).map(|value| Setting {
                    value,
                    source: Source::Project(p.file.clone()),
                })
            })
            .or_else(|| {
                let u = self.user.as_ref()?;
                user(u).map(|value| Setting {
                    value,
                    source: Source::User(u.file.clone()),
                })
            })
    }

    /// The engine name from the environment or the files (`auto` included), before detection.
    pub fn engine_name(&self) -> Option<Setting> {
        self.layered(
            Some(EnvVars::BERTH_ENGINE),
            |p| p.engine.name.clone(),
            |u| u.engine.name.clone(),
        )
    }

    /// Engine connection settings from the files, project first; the engines' own environment variables
    /// (`DOCKER_HOST`, `CONTAINER_HOST`, `CONTAINERD_ADDRESS`) win over both.
    pub fn connection(&self) -> EngineSettings {
        let project = self
            .project
            .as_ref()
            .map(|p| p.engine.clone())
            .unwrap_or_default();
        let user = self
            .user
            .as_ref()
            .map(|u| u.engine.clone())
            .unwrap_or_default();
        let files = project.or(&user);
        let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        EngineSettings {
            name: files.name,
            docker_host: env(EnvVars::DOCKER_HOST).or(files.docker_host),
            podman_socket: env(EnvVars::CONTAINER_HOST).or(files.podman_socket),
            containerd_address: env(EnvVars::CONTAINERD_ADDRESS).or(files.containerd_address),
            containerd_namespace: env(EnvVars::CONTAINERD_NAMESPACE).or(files.containerd_namespace),
            containerd_snapshotter: files.containerd_snapshotter,
        }
    }

    /// Where the user named `kind`'s address, and the value: `DOCKER_HOST`, `CONTAINER_HOST` or
    /// `CONTAINERD_ADDRESS`, else `engine.<kind>` in the project file, then the user file. `None` when nobody did
    /// (the engine's default place). An address someone named is never passed over for another engine.
    pub fn endpoint(&self, kind: crate::engine_choice::EngineKind) -> Option<Setting> {
        use crate::engine_choice::EngineKind;
        let (var, field): (_, fn(&EngineSettings) -> Option<String>) = match kind {
            EngineKind::Docker => (EnvVars::DOCKER_HOST, |e| e.docker_host.clone()),
            EngineKind::Podman => (EnvVars::CONTAINER_HOST, |e| e.podman_socket.clone()),
            EngineKind::Containerd => (EnvVars::CONTAINERD_ADDRESS, |e| {
                e.containerd_address.clone()
            }),
            // LXD is found by LXD_DIR alone (no file setting yet)
            EngineKind::Lxd => (EnvVars::LXD_DIR, |_| None),
        };
        self.layered(Some(var), |p| field(&p.engine), |u| field(&u.engine))
    }

    /// The registry for specs that name none.
    pub fn registry(&self) -> Option<Setting> {
        self.layered(
            Some(EnvVars::BERTH_REGISTRY),
            |p| p.registry.clone(),
            |u| u.registry.clone(),
        )
    }

    /// The image of tasks that name none: `BERTH_DEFAULT_IMAGE`, the files, else flytekit's scheme.
    pub fn default_image(&self) -> Setting {
        if let Some(setting) = self.layered(
            Some(EnvVars::BERTH_DEFAULT_IMAGE),
            |p| p.default_image.clone(),
            |u| u.default_image.clone(),
        ) {
            return setting;
        }
        let python = self
            .layered(
                None,
                |p| p.python_version.clone(),
                |u| u.python_version.clone(),
            )
            .or_else(default_image::local_python)
            .unwrap_or(Setting {
                value: berth_core::plan::DEFAULT_PYTHON_VERSION.to_string(),
                source: Source::Default,
            });
        Setting {
            value: default_image::flytekit_default(&python.value),
            source: match python.source {
                Source::Default => Source::Default,
                Source::Detected(what) => Source::Detected(format!(
                    "flytekit's scheme for Python {} of {what}",
                    python.value
                )),
                other => Source::Detected(format!(
                    "flytekit's scheme for Python {}, python_version {other}",
                    python.value
                )),
            },
        }
    }
}
