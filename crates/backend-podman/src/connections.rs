//! The service connections `podman system connection add` records, read as `podman --remote` reads them.
//!
//! Podman 5 keeps them in `podman-connections.json` (`{"Connection": {"Default": NAME, "Connections": {NAME:
//! {"URI", "Identity"}}}}`) in the user's containers configuration folder; Podman 4 in containers.conf
//! (`[engine] active_service = NAME` and `[engine.service_destinations.NAME] uri, identity`), the file
//! `CONTAINERS_CONF` names, else `/usr/share/containers/containers.conf`, `/etc/containers/containers.conf` and
//! the user's own, later files overriding earlier ones. A connection is chosen by name (`CONTAINER_CONNECTION`
//! or berth.yaml's `engine.podman.connection`), else the default one.

use std::path::{Path, PathBuf};

use berth_core::{Error, Operation, Result};

use crate::ENGINE;

/// Environment variable naming the connection to use, as for `podman --remote`.
pub const CONTAINER_CONNECTION: &str = "CONTAINER_CONNECTION";
/// Environment variable naming the one containers.conf to read, as for podman.
pub const CONTAINERS_CONF: &str = "CONTAINERS_CONF";

/// A recorded connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// Its name.
    pub name: String,
    /// The service's address (`ssh://...`, `unix://...`).
    pub uri: String,
    /// The private key for an ssh:// address.
    pub identity: Option<PathBuf>,
}

/// What the configuration files record: every connection, and the default one's name.
#[derive(Debug, Default)]
struct Recorded {
    connections: Vec<Connection>,
    default: Option<String>,
    /// The files read, for messages.
    read: Vec<PathBuf>,
}

/// The connection named `name`, else the default one (`None` when none is recorded). A name nothing records is
/// an error that lists the recorded ones.
pub fn find(name: Option<&str>) -> Result<Option<Connection>> {
    let recorded = read_all()?;
    let wanted = match name {
        Some(name) => name.to_string(),
        None => match &recorded.default {
            Some(default) => default.clone(),
            None => return Ok(None),
        },
    };
    match recorded.connections.iter().find(|c| c.name == wanted) {
        Some(found) => Ok(Some(found.clone())),
        None => {
            let known: Vec<&str> = recorded
                .connections
                .iter()
                .map(|c| c.name.as_str())
                .collect();
            let files: Vec<String> = recorded
                .read
                .iter()
                .map(|p| p.display().to_string())
                .collect();
            Err(Error::invalid(format!(
                "podman connection `{wanted}` is not recorded (known: {}; read: {})",
                if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                },
                if files.is_empty() {
                    "no configuration file".to_string()
                } else {
                    files.join(", ")
                }
            ))
            .with_engine(ENGINE)
            .with_operation(Operation::Connect)
            .with_hint(format!(
                "record it with `podman system connection add {wanted} ssh://USER@HOST/run/user/UID/podman/\
                 podman.sock`, or name a recorded one in {CONTAINER_CONNECTION} (or berth.yaml's \
                 engine.podman.connection)"
            )))
        }
    }
}

/// The user's containers configuration folder: `$XDG_CONFIG_HOME/containers`, else `~/.config/containers`.
fn user_folder() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
    Some(base.join("containers"))
}

fn read_all() -> Result<Recorded> {
    let mut recorded = Recorded::default();
    let conf_files: Vec<PathBuf> = match std::env::var_os(CONTAINERS_CONF).filter(|v| !v.is_empty())
    {
        Some(only) => vec![PathBuf::from(only)],
        None => {
            let mut files = vec![
                PathBuf::from("/usr/share/containers/containers.conf"),
                PathBuf::from("/etc/containers/containers.conf"),
            ];
            files.extend(user_folder().map(|f| f.join("containers.conf")));
            files
        }
    };
    for file in conf_files {
        if let Some(text) = read_if_there(&file)? {
            merge_containers_conf(&mut recorded, &file, &text)?;
            recorded.read.push(file);
        }
    }
    // Podman 5's file wins over containers.conf, as it does for podman
    if let Some(file) = user_folder().map(|f| f.join("podman-connections.json")) {
        if let Some(text) = read_if_there(&file)? {
            merge_connections_json(&mut recorded, &file, &text)?;
            recorded.read.push(file);
        }
    }
    Ok(recorded)
}

fn read_if_there(file: &Path) -> Result<Option<String>> {
    match std::fs::read_to_string(file) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(Error::io(file, e)
            .with_engine(ENGINE)
            .with_operation(Operation::Connect)),
    }
}

fn malformed(file: &Path, why: impl std::fmt::Display) -> Error {
    Error::invalid(format!("{}: {why}", file.display()))
        .with_engine(ENGINE)
        .with_operation(Operation::Connect)
        .with_hint("fix the file, or see `podman system connection list`")
}

/// Adds (or replaces) what one containers.conf records.
fn merge_containers_conf(recorded: &mut Recorded, file: &Path, text: &str) -> Result<()> {
    let table: toml::Table = toml::from_str(text).map_err(|e| malformed(file, e))?;
    let Some(engine) = table.get("engine").and_then(|e| e.as_table()) else {
        return Ok(());
    };
    if let Some(active) = engine.get("active_service").and_then(|a| a.as_str()) {
        if !active.is_empty() {
            recorded.default = Some(active.to_string());
        }
    }
    if let Some(destinations) = engine
        .get("service_destinations")
        .and_then(|d| d.as_table())
    {
        for (name, destination) in destinations {
            let uri = destination
                .get("uri")
                .and_then(|u| u.as_str())
                .ok_or_else(|| {
                    malformed(file, format!("service destination `{name}` has no uri"))
                })?;
            let identity = destination
                .get("identity")
                .and_then(|i| i.as_str())
                .filter(|i| !i.is_empty())
                .map(PathBuf::from);
            add(recorded, name, uri, identity);
        }
    }
    Ok(())
}

/// Adds (or replaces) what Podman 5's podman-connections.json records.
fn merge_connections_json(recorded: &mut Recorded, file: &Path, text: &str) -> Result<()> {
    let json: serde_json::Value = serde_json::from_str(text).map_err(|e| malformed(file, e))?;
    let connection = &json["Connection"];
    if let Some(default) = connection["Default"].as_str().filter(|d| !d.is_empty()) {
        recorded.default = Some(default.to_string());
    }
    if let Some(connections) = connection["Connections"].as_object() {
        for (name, destination) in connections {
            let uri = destination["URI"]
                .as_str()
                .ok_or_else(|| malformed(file, format!("connection `{name}` has no URI")))?;
            let identity = destination["Identity"]
                .as_str()
                .filter(|i| !i.is_empty())
                .map(PathBuf::from);
            add(recorded, name, uri, identity);
        }
    }
    Ok(())
}

fn add(recorded: &mut Recorded, name: &str, uri: &str, identity: Option<PathBuf>) {
    recorded.connections.retain(|c| c.name != name);
    recorded.connections.push(Connection {
        name: name.to_string(),
        uri: uri.to_string(),
        identity,
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = r#"
[engine]
  active_service = "box"
  [engine.service_destinations]
    [engine.service_destinations.box]
      uri = "ssh://root@10.0.0.2:22/run/podman/podman.sock"
      identity = "/keys/box"
    [engine.service_destinations.other]
      uri = "ssh://me@other/run/user/1000/podman/podman.sock"
"#;

    #[test]
    fn reads_podman_4_destinations_and_the_active_one() {
        let mut recorded = Recorded::default();
        merge_containers_conf(&mut recorded, Path::new("c.conf"), CONF).expect("parse");
        assert_eq!(recorded.default.as_deref(), Some("box"));
        assert_eq!(recorded.connections.len(), 2);
        let boxed = recorded
            .connections
            .iter()
            .find(|c| c.name == "box")
            .expect("box");
        assert_eq!(boxed.uri, "ssh://root@10.0.0.2:22/run/podman/podman.sock");
        assert_eq!(boxed.identity.as_deref(), Some(Path::new("/keys/box")));
    }

    #[test]
    fn podman_5_json_overrides_and_sets_the_default() {
        let mut recorded = Recorded::default();
        merge_containers_conf(&mut recorded, Path::new("c.conf"), CONF).expect("parse");
        let json = r#"{"Connection": {"Default": "other", "Connections": {"other": {"URI": "ssh://me@new/run/p.sock", "Identity": ""}}}}"#;
        merge_connections_json(&mut recorded, Path::new("p.json"), json).expect("parse");
        assert_eq!(recorded.default.as_deref(), Some("other"));
        let other = recorded
            .connections
            .iter()
            .find(|c| c.name == "other")
            .expect("other");
        assert_eq!(other.uri, "ssh://me@new/run/p.sock");
        assert_eq!(other.identity, None);
    }

    #[test]
    fn malformed_files_are_named() {
        let mut recorded = Recorded::default();
        let e = merge_containers_conf(&mut recorded, Path::new("/x/c.conf"), "[engine\n")
            .expect_err("bad");
        assert!(e.to_string().contains("/x/c.conf"), "{e}");
        let e = merge_containers_conf(
            &mut recorded,
            Path::new("/x/c.conf"),
            "[engine.service_destinations.a]\nidentity = \"k\"\n",
        )
        .expect_err("no uri");
        assert!(e.to_string().contains("no uri"), "{e}");
    }
}
