//! Settings from files and the environment, each with where it came from: flag, environment, project file
//! (`berth.yaml`, found walking up), user file, detection, built-in default. `berth config` prints them.

pub mod default_image;
pub mod engine;
pub mod file;
pub mod project;
pub mod user;

use std::path::Path;

use berth_core::{Error, Result};

use crate::env_vars::EnvVars;
pub use berth_engines::{Setting, Source};
pub use engine::EngineSettings;
pub use project::Project;
pub use user::UserConfig;

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
        var.and_then(Setting::from_env)
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

/// The files' `engine:` settings, project first, for engine choice and connecting (the engines' own environment
/// variables win over both: `berth_engines` reads them).
impl berth_engines::FileSettings for Config {
    fn engine_name(&self) -> Option<Setting> {
        self.layered(None, |p| p.engine.name.clone(), |u| u.engine.name.clone())
    }

    fn engine_setting(&self, engine: &str, key: &str) -> Option<Setting> {
        let value = |e: &EngineSettings| e.get(engine, key).map(str::to_string);
        self.layered(None, |p| value(&p.engine), |u| value(&u.engine))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_engines::ChoiceSource;

    #[test]
    fn the_project_file_is_found_walking_up_and_names_the_engine() {
        let dir = tempfile::tempdir().expect("temp dir");
        let text = "engine:\n  name: podman\n  containerd: {namespace: builds}\n";
        std::fs::write(dir.path().join("berth.yaml"), text).expect("write");
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        let project = Project::find(&deep).expect("reads").expect("found");
        assert_eq!(project.file, dir.path().join("berth.yaml"));
        let config = Config {
            project: Some(project),
            user: None,
        };
        let (kind, source) = berth_engines::choose_with(Some("docker"), &config).expect("flag");
        assert_eq!((kind.name(), source), ("docker", ChoiceSource::Flag));
        if std::env::var_os(berth_engines::BERTH_ENGINE).is_none() {
            let (kind, source) = berth_engines::choose_with(None, &config).expect("project");
            assert_eq!(kind.name(), "podman");
            assert_eq!(
                source,
                ChoiceSource::ProjectFile(dir.path().join("berth.yaml"))
            );
        }
        let namespace =
            berth_engines::FileSettings::engine_setting(&config, "containerd", "namespace");
        assert_eq!(namespace.map(|s| s.value).as_deref(), Some("builds"));
    }

    #[test]
    fn engine_sections_take_only_their_engines_keys() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("berth.yaml");
        std::fs::write(&path, "engine:\n  docker: {socket: /x.sock}\n").expect("write");
        let err = Project::find(dir.path()).expect_err("podman's key under docker");
        assert!(err.to_string().contains("socket"), "{err}");
    }
}
