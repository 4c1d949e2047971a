//! Which engine to use: `--engine`, then `BERTH_ENGINE`, then `engine:` in the project's file, then in the
//! user's, then detection of a reachable socket. The choice and where it came from are printed by the front end,
//! so a surprise is visible; a setting that names an engine's address is named in that engine's errors.

use std::fmt;
use std::path::PathBuf;

use berth_core::{Error, Result};

use crate::settings::{FileSettings, Setting, Source};
use crate::{names, EngineKind, BERTH_ENGINE};

/// Where the engine choice came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChoiceSource {
    /// `--engine`.
    Flag,
    /// The `BERTH_ENGINE` environment variable.
    Environment,
    /// `engine:` in a project file.
    ProjectFile(PathBuf),
    /// `engine:` in the user's config file.
    UserFile(PathBuf),
    /// A reachable socket was found.
    Detected(String),
}

impl fmt::Display for ChoiceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChoiceSource::Flag => f.write_str("from --engine"),
            ChoiceSource::Environment => write!(f, "from {BERTH_ENGINE}"),
            ChoiceSource::ProjectFile(path) | ChoiceSource::UserFile(path) => {
                write!(f, "from {}", path.display())
            }
            ChoiceSource::Detected(socket) => write!(f, "detected at {socket}"),
        }
    }
}

/// Picks the engine: `flag` (`--engine`), `BERTH_ENGINE`, the project file, the user file, then detection;
/// `auto` anywhere means "keep looking further down the list".
pub fn choose_with(
    flag: Option<&str>,
    files: &dyn FileSettings,
) -> Result<(EngineKind, ChoiceSource)> {
    if let Some(name) = flag.filter(|n| !is_auto(n)) {
        return Ok((name.parse()?, ChoiceSource::Flag));
    }
    let configured = Setting::from_env(BERTH_ENGINE).or_else(|| files.engine_name());
    if let Some(setting) = configured.filter(|s| !is_auto(&s.value)) {
        let kind = setting.value.parse().map_err(|e: Error| {
            let choices = format!("{} or auto", names(", "));
            let (origin, fix) = match &setting.source {
                Source::Environment(var) => (
                    format!("{var}={}", setting.value),
                    format!("set {var} to {choices}, or unset it"),
                ),
                Source::Project(path) | Source::User(path) => (
                    format!("engine `{}` {}", setting.value, setting.source),
                    format!("set `engine:` in {} to {choices}", path.display()),
                ),
                other => (
                    format!("engine `{}` {other}", setting.value),
                    format!("name {choices}"),
                ),
            };
            e.context(origin)
                .with_hint(format!("{fix}; or pass --engine to override it"))
        })?;
        let source = match setting.source {
            Source::Project(path) => ChoiceSource::ProjectFile(path),
            Source::User(path) => ChoiceSource::UserFile(path),
            _ => ChoiceSource::Environment,
        };
        return Ok((kind, source));
    }
    crate::detect::detect(files)
}

fn is_auto(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("auto")
}

/// `DOCKER_HOST=unix:///x`, or `engine.docker.host: unix:///x` (from FILE): the setting as the user wrote it.
pub fn named_address(kind: EngineKind, setting: &Setting) -> String {
    match &setting.source {
        Source::Environment(var) => format!("{var}={}", setting.value),
        other => format!("`{}: {}` ({other})", file_key(kind), setting.value),
    }
}

/// `DOCKER_HOST`, or `engine.docker.host` in FILE: which setting names `kind`'s address.
pub fn setting_name(kind: EngineKind, setting: &Setting) -> String {
    match &setting.source {
        Source::Environment(var) => var.to_string(),
        Source::Project(path) | Source::User(path) => {
            format!("`{}` in {}", file_key(kind), path.display())
        }
        other => format!("`{}` {other}", file_key(kind)),
    }
}

/// How to stop naming that address: unset the variable, or remove the file's entry.
pub(crate) fn way_out(kind: EngineKind, setting: &Setting) -> String {
    match &setting.source {
        Source::Environment(var) => format!("unset {var}"),
        _ => format!("remove `engine.{kind}` from that file"),
    }
}

/// `engine.docker.host`: the file key of `kind`'s address.
fn file_key(kind: EngineKind) -> String {
    format!("engine.{kind}.{}", kind.info().address.key)
}

/// A failure to reach `kind` at an address the user named says which setting named it, and that unsetting it is a
/// way out.
pub fn blame_named(kind: EngineKind, named: Option<&Setting>, error: Error) -> Error {
    let Some(setting) = named else {
        return error;
    };
    let unset = way_out(kind, setting);
    let hint = match error.hint() {
        Some(hint) => format!("{hint}; or point it at the {kind} service, or {unset}"),
        None => format!("point it at the {kind} service, or {unset}"),
    };
    error.context(named_address(kind, setting)).with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A project file that says `engine: podman` and names Docker's address.
    struct ProjectFile(PathBuf);

    impl FileSettings for ProjectFile {
        fn engine_name(&self) -> Option<Setting> {
            Some(Setting {
                value: "podman".into(),
                source: Source::Project(self.0.clone()),
            })
        }

        fn engine_setting(&self, engine: &str, key: &str) -> Option<Setting> {
            (engine, key).eq(&("docker", "host")).then(|| Setting {
                value: "unix:///nowhere.sock".into(),
                source: Source::Project(self.0.clone()),
            })
        }
    }

    #[test]
    #[cfg(all(feature = "docker", feature = "podman"))]
    fn the_flag_wins_then_the_project_file() {
        let file = ProjectFile(PathBuf::from("/p/berth.yaml"));
        let (kind, source) = choose_with(Some("docker"), &file).expect("flag");
        assert_eq!((kind.name(), source), ("docker", ChoiceSource::Flag));
        if std::env::var_os(BERTH_ENGINE).is_none() {
            let (kind, source) = choose_with(Some("auto"), &file).expect("project");
            assert_eq!(kind.name(), "podman");
            assert_eq!(source, ChoiceSource::ProjectFile("/p/berth.yaml".into()));
        }
    }

    #[test]
    #[cfg(feature = "docker")]
    fn a_named_address_is_blamed_with_its_file_key() {
        let file = ProjectFile(PathBuf::from("/p/berth.yaml"));
        let docker: EngineKind = "docker".parse().expect("docker");
        if std::env::var_os("DOCKER_HOST").is_some() {
            eprintln!("skipped: DOCKER_HOST names Docker's address instead of the file");
            return;
        }
        let setting = crate::named(docker, &file).expect("named");
        assert_eq!(
            named_address(docker, &setting),
            "`engine.docker.host: unix:///nowhere.sock` (from /p/berth.yaml)"
        );
        let error = blame_named(docker, Some(&setting), Error::invalid("down"));
        assert_eq!(
            error.hint(),
            Some("point it at the docker service, or remove `engine.docker` from that file")
        );
    }
}
