//! Which engine to use: `--engine`, then `BERTH_ENGINE`, then `engine:` in the project's `berth.yaml`, then in
//! the user's config file, then detection of a reachable socket. The choice and where it came from are printed, so a surprise is visible.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use berth_core::{Error, Result};

#[cfg(test)]
use crate::config::Project;
use crate::config::{Config, EngineSettings, Setting, Source};
use crate::env_vars::EnvVars;

/// The engines berth knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineKind {
    /// Docker Engine (dockerd), through its API socket.
    Docker,
    /// Podman, rootful or rootless, through its libpod API socket.
    Podman,
    /// containerd, through its gRPC socket; berth executes the build itself.
    Containerd,
    /// LXD, through its REST API socket; berth executes the build itself in an LXD container.
    Lxd,
}

/// Every engine name, for messages.
pub const KNOWN: &[&str] = &["docker", "podman", "containerd", "lxd"];

impl EngineKind {
    /// The engine's name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Containerd => "containerd",
            EngineKind::Lxd => "lxd",
        }
    }
}

impl fmt::Display for EngineKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for EngineKind {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "docker" => Ok(EngineKind::Docker),
            "podman" => Ok(EngineKind::Podman),
            "containerd" => Ok(EngineKind::Containerd),
            "lxd" => Ok(EngineKind::Lxd),
            other => Err(Error::invalid(format!(
                "unknown engine `{other}`; known engines: {}",
                KNOWN.join(", ")
            ))
            .with_hint("pass --engine docker|podman|containerd|lxd, or `auto` to detect")),
        }
    }
}

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
            ChoiceSource::Environment => write!(f, "from {}", EnvVars::BERTH_ENGINE),
            ChoiceSource::ProjectFile(path) | ChoiceSource::UserFile(path) => {
                write!(f, "from {}", path.display())
            }
            ChoiceSource::Detected(socket) => write!(f, "detected at {socket}"),
        }
    }
}

/// Picks the engine: `--engine`, `BERTH_ENGINE`, the project file, the user file, then detection; `auto`
/// anywhere means "keep looking further down the list".
pub fn choose_with(flag: Option<&str>, config: &Config) -> Result<(EngineKind, ChoiceSource)> {
    if let Some(name) = flag.filter(|n| !is_auto(n)) {
        return Ok((name.parse()?, ChoiceSource::Flag));
    }
    if let Some(setting) = config.engine_name().filter(|s| !is_auto(&s.value)) {
        let kind = setting.value.parse().map_err(|e: Error| {
            let (origin, fix) = match &setting.source {
                Source::Environment(var) => (
                    format!("{var}={}", setting.value),
                    format!("set {var} to docker, podman, containerd or auto, or unset it"),
                ),
                Source::Project(path) | Source::User(path) => (
                    format!("engine `{}` {}", setting.value, setting.source),
                    format!(
                        "set `engine:` in {} to docker, podman, containerd or auto",
                        path.display()
                    ),
                ),
                other => (
                    format!("engine `{}` {other}", setting.value),
                    "name docker, podman, containerd or auto".to_string(),
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
    detect(config)
}

fn is_auto(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("auto")
}

/// The first engine whose socket answers: Docker, then Podman, then containerd. An address the user named
/// (`DOCKER_HOST`, `CONTAINER_HOST`, `CONTAINERD_ADDRESS` or a file's `engine.<name>`) that does not answer stops
/// detection with an error naming it, rather than a quiet switch to the next engine.
fn detect(config: &Config) -> Result<(EngineKind, ChoiceSource)> {
    let connection = config.connection();
    let mut candidates: Vec<(EngineKind, String)> = Vec::new();
    candidates.push((
        EngineKind::Docker,
        connection
            .docker_host
            .clone()
            .unwrap_or_else(|| "/var/run/docker.sock".into()),
    ));
    for socket in podman_sockets(&connection) {
        candidates.push((EngineKind::Podman, socket));
    }
    let containerd = connection
        .containerd_address
        .clone()
        .unwrap_or_else(|| "/run/containerd/containerd.sock".into());
    candidates.push((EngineKind::Containerd, containerd));
    let mut refused = Vec::new();
    for (kind, socket) in &candidates {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        if path.contains("://") {
            // tcp:// or ssh://: named on purpose; the engine reports whether it answers
            return Ok((*kind, ChoiceSource::Detected(socket.clone())));
        }
        let named = config
            .endpoint(*kind)
            .filter(|setting| &setting.value == socket);
        let answer = if Path::new(path).exists() {
            std::os::unix::net::UnixStream::connect(path).map(drop)
        } else {
            Err(std::io::ErrorKind::NotFound.into())
        };
        let refusal = match answer {
            Ok(()) => {
                let place = named.map_or_else(|| socket.clone(), |n| named_address(*kind, &n));
                return Ok((*kind, ChoiceSource::Detected(place)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => Some(e),
        };
        if let Some(setting) = named {
            return Err(named_address_unanswered(*kind, &setting, refusal.as_ref()));
        }
        refused.extend(refusal.map(|e| (*kind, socket.clone(), e)));
        // a default socket that is missing, refuses this user or has nobody listening: try the next one
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(
            |(kind, socket)| match refused.iter().find(|(_, s, _)| s == socket) {
                Some((_, _, e)) => format!("{kind}: {socket} ({})", describe_refusal(e)),
                None => format!("{kind}: {socket} (no such socket)"),
            },
        )
        .collect();
    let denied: Vec<&str> = refused
        .iter()
        .filter(|(_, _, e)| e.kind() == std::io::ErrorKind::PermissionDenied)
        .map(|(_, socket, _)| socket.strip_prefix("unix://").unwrap_or(socket))
        .collect();
    let mut fixes: Vec<String> = Vec::new();
    let mut root_only: Vec<&str> = Vec::new();
    for path in denied {
        match socket_group(path) {
            Some(group) => fixes.push(format!(
                "join group `{group}` to use {path} (`sudo usermod -aG {group} $USER`, then log in again)"
            )),
            None => root_only.push(path),
        }
    }
    if !root_only.is_empty() {
        fixes.push(format!(
            "{} {} only for root: run berth as root, or start your own rootless Podman \
             (`systemctl --user start podman.socket`)",
            root_only.join(" and "),
            if root_only.len() == 1 { "is" } else { "are" }
        ));
    }
    fixes.push(
        "start an engine (`dockerd`, `podman system service`, `containerd`) or name one with --engine / BERTH_ENGINE"
            .into(),
    );
    let hint = fixes.join("; or ");
    Err(Error::new(
        berth_core::ErrorKind::EngineUnavailable,
        format!(
            "no container engine this user can reach (looked at {})",
            looked.join("; ")
        ),
    )
    .with_hint(hint))
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
fn way_out(kind: EngineKind, setting: &Setting) -> String {
    match &setting.source {
        Source::Environment(var) => format!("unset {var}"),
        _ => format!("remove `engine.{kind}` from that file"),
    }
}

fn file_key(kind: EngineKind) -> &'static str {
    match kind {
        EngineKind::Docker => "engine.docker.host",
        EngineKind::Podman => "engine.podman.socket",
        EngineKind::Containerd => "engine.containerd.address",
        EngineKind::Lxd => "engine.lxd",
    }
}

/// The error for an address the user named that does not answer; `refused` is why, when its socket exists
/// (else there is no such socket, or the value is not a socket path at all).
fn named_address_unanswered(
    kind: EngineKind,
    setting: &Setting,
    refused: Option<&std::io::Error>,
) -> Error {
    let why = match refused {
        Some(e) => describe_refusal(e),
        None if setting.value.trim_start_matches("unix://").starts_with('/') => {
            "no such socket".to_string()
        }
        None => "not a socket address (unix:///PATH)".to_string(),
    };
    let unset = way_out(kind, setting);
    Error::new(
        berth_core::ErrorKind::EngineUnavailable,
        format!(
            "{} names the {kind} engine, which does not answer there: {why}",
            named_address(kind, setting)
        ),
    )
    .with_hint(format!(
        "start {kind} there or point it at one that runs; or {unset} to let berth detect an engine; or choose \
         one with --engine"
    ))
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

fn describe_refusal(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        std::io::ErrorKind::ConnectionRefused => "nothing listens on it".into(),
        _ => e.to_string(),
    }
}

/// The group that may open the socket at `path`, when its mode admits a group other than root's.
fn socket_group(path: &str) -> Option<String> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(path).ok()?;
    let gid = meta.gid();
    (meta.mode() & 0o060 == 0o060 && gid != 0)
        .then(|| group_name(gid).unwrap_or_else(|| gid.to_string()))
}

/// The name of group `gid`, from /etc/group.
fn group_name(gid: u32) -> Option<String> {
    let text = std::fs::read_to_string("/etc/group").ok()?;
    crate::doctor::accounts::parse_groups(&text)
        .into_iter()
        .find(|g| g.gid == gid)
        .map(|g| g.name)
}

/// Podman's sockets in the order its own tools look: `CONTAINER_HOST` (or the configured socket), the user's,
/// then root's.
pub fn podman_sockets(connection: &EngineSettings) -> Vec<String> {
    let mut sockets = Vec::new();
    if let Some(socket) = &connection.podman_socket {
        sockets.push(socket.clone());
    }
    if let Ok(runtime) = std::env::var(EnvVars::XDG_RUNTIME_DIR) {
        if !runtime.is_empty() {
            sockets.push(format!("{runtime}/podman/podman.sock"));
        }
    }
    sockets.push("/run/podman/podman.sock".into());
    sockets
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_engines_list_the_known_ones() {
        let err = "dokcer".parse::<EngineKind>().expect_err("unknown");
        assert!(
            err.to_string().contains("docker, podman, containerd"),
            "{err}"
        );
        assert_eq!(
            "Podman".parse::<EngineKind>().expect("known"),
            EngineKind::Podman
        );
    }

    #[test]
    fn the_project_file_is_found_walking_up() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("berth.yaml"), "engine: podman\n").expect("write");
        let deep = dir.path().join("a/b");
        std::fs::create_dir_all(&deep).expect("mkdir");
        let project = Project::find(&deep).expect("reads").expect("found");
        assert_eq!(project.file, dir.path().join("berth.yaml"));
        let config = Config {
            project: Some(project),
            user: None,
        };
        let (kind, source) = choose_with(Some("docker"), &config).expect("flag");
        assert_eq!((kind, source), (EngineKind::Docker, ChoiceSource::Flag));
        if std::env::var_os(EnvVars::BERTH_ENGINE).is_none() {
            let (kind, source) = choose_with(None, &config).expect("project");
            assert_eq!(kind, EngineKind::Podman);
            assert_eq!(
                source,
                ChoiceSource::ProjectFile(dir.path().join("berth.yaml"))
            );
        }
    }
}
