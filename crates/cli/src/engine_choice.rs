//! Which engine to use: `--engine`, then `BERTH_ENGINE`, then `engine:` in the project's `berth.yaml`, then
//! detection of a reachable socket. The choice and where it came from are printed, so a surprise is visible.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use berth_core::yaml::{self, Value};
use berth_core::{Error, Result};

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
}

/// Every engine name, for messages.
pub const KNOWN: &[&str] = &["docker", "podman", "containerd"];

impl EngineKind {
    /// The engine's name.
    pub fn name(self) -> &'static str {
        match self {
            EngineKind::Docker => "docker",
            EngineKind::Podman => "podman",
            EngineKind::Containerd => "containerd",
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
            other => Err(Error::invalid(format!(
                "unknown engine `{other}`; known engines: {}",
                KNOWN.join(", ")
            ))
            .with_hint("pass --engine docker|podman|containerd, or `auto` to detect")),
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
    /// A reachable socket was found.
    Detected(String),
}

impl fmt::Display for ChoiceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChoiceSource::Flag => f.write_str("from --engine"),
            ChoiceSource::Environment => write!(f, "from {}", EnvVars::BERTH_ENGINE),
            ChoiceSource::ProjectFile(path) => write!(f, "from {}", path.display()),
            ChoiceSource::Detected(socket) => write!(f, "detected at {socket}"),
        }
    }
}

/// Picks the engine; `auto` anywhere means "keep looking further down the list".
pub fn choose(flag: Option<&str>) -> Result<(EngineKind, ChoiceSource)> {
    if let Some(name) = flag.filter(|n| !is_auto(n)) {
        return Ok((name.parse()?, ChoiceSource::Flag));
    }
    if let Some(name) = std::env::var(EnvVars::BERTH_ENGINE)
        .ok()
        .filter(|n| !n.is_empty() && !is_auto(n))
    {
        let kind = name
            .parse()
            .map_err(|e: Error| e.context(format!("{}={name}", EnvVars::BERTH_ENGINE)))?;
        return Ok((kind, ChoiceSource::Environment));
    }
    let cwd = std::env::current_dir().map_err(|e| Error::io(Path::new("."), e))?;
    if let Some((path, name)) = project_engine(&cwd)? {
        if !is_auto(&name) {
            let kind = name.parse().map_err(|e: Error| e.context(path.display()))?;
            return Ok((kind, ChoiceSource::ProjectFile(path)));
        }
    }
    detect()
}

fn is_auto(name: &str) -> bool {
    name.trim().eq_ignore_ascii_case("auto")
}

/// The `engine:` of the nearest `berth.yaml`, walking up from `dir` as cargo does.
fn project_engine(dir: &Path) -> Result<Option<(PathBuf, String)>> {
    for folder in dir.ancestors() {
        let path = folder.join("berth.yaml");
        if !path.is_file() {
            continue;
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let root = yaml::load(&text).map_err(|e| {
            Error::invalid(format!(
                "{}:{}:{}: {}",
                path.display(),
                e.mark.line,
                e.mark.column,
                e.message
            ))
        })?;
        let Some(Value::Map(entries)) = root.map(|n| n.value) else {
            return Ok(None);
        };
        let engine = entries
            .iter()
            .find(|(k, _)| k.value.as_str() == Some("engine"))
            .and_then(|(_, v)| match &v.value {
                Value::Str(s) => Some(s.clone()),
                Value::Map(m) => m
                    .iter()
                    .find(|(k, _)| k.value.as_str() == Some("name"))
                    .and_then(|(_, v)| v.value.as_str().map(String::from)),
                _ => None,
            });
        return Ok(engine.map(|e| (path, e)));
    }
    Ok(None)
}

/// The first engine whose socket exists: Docker, then Podman, then containerd.
fn detect() -> Result<(EngineKind, ChoiceSource)> {
    let mut candidates: Vec<(EngineKind, String)> = Vec::new();
    match std::env::var(EnvVars::DOCKER_HOST) {
        Ok(host) if !host.is_empty() => candidates.push((EngineKind::Docker, host)),
        _ => candidates.push((EngineKind::Docker, "/var/run/docker.sock".into())),
    }
    for socket in podman_sockets() {
        candidates.push((EngineKind::Podman, socket));
    }
    let containerd = std::env::var(EnvVars::CONTAINERD_ADDRESS)
        .unwrap_or_else(|_| "/run/containerd/containerd.sock".into());
    candidates.push((EngineKind::Containerd, containerd));
    for (kind, socket) in &candidates {
        let path = socket.strip_prefix("unix://").unwrap_or(socket);
        let reachable = if path.contains("://") {
            true
        } else {
            Path::new(path).exists()
        };
        if reachable {
            return Ok((*kind, ChoiceSource::Detected(socket.clone())));
        }
    }
    let looked: Vec<String> = candidates
        .iter()
        .map(|(k, s)| format!("{k}: {s}"))
        .collect();
    Err(Error::new(berth_core::ErrorKind::EngineUnavailable, format!("no container engine found (looked at {})", looked.join("; ")))
        .with_hint("start one (`dockerd`, `podman system service`, `containerd`) or name it with --engine / BERTH_ENGINE"))
}

/// Podman's sockets in the order its own tools look: `CONTAINER_HOST`, the user's, then root's.
pub fn podman_sockets() -> Vec<String> {
    let mut sockets = Vec::new();
    if let Ok(host) = std::env::var(EnvVars::CONTAINER_HOST) {
        if !host.is_empty() {
            sockets.push(host);
        }
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
        let (path, engine) = project_engine(&deep).expect("reads").expect("found");
        assert_eq!(
            (path, engine.as_str()),
            (dir.path().join("berth.yaml"), "podman")
        );
    }
}
