//! The `engine:` setting of a project or user file: a name, or a name with connection settings per engine.
//!
//! ```yaml
//! engine: podman
//! # or
//! engine:
//!   name: auto                      # docker | podman | containerd | auto
//!   docker: {host: unix:///var/run/docker.sock}
//!   podman: {socket: unix:///run/user/1000/podman/podman.sock}
//!   containerd: {address: /run/containerd/containerd.sock, namespace: default, snapshotter: overlayfs}
//! ```

use berth_core::yaml::{Node, Value};
use berth_core::Result;

use super::file::YamlFile;

/// Engine name and connection settings from one file; unset fields fall through to the next source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSettings {
    /// docker, podman, containerd or auto.
    pub name: Option<String>,
    /// Docker daemon address (as `DOCKER_HOST`).
    pub docker_host: Option<String>,
    /// Podman service socket (as `CONTAINER_HOST`).
    pub podman_socket: Option<String>,
    /// containerd socket (as `CONTAINERD_ADDRESS`).
    pub containerd_address: Option<String>,
    /// containerd namespace (as `CONTAINERD_NAMESPACE`).
    pub containerd_namespace: Option<String>,
    /// containerd snapshotter.
    pub containerd_snapshotter: Option<String>,
}

impl EngineSettings {
    /// Reads the `engine` entry of `file`, if any.
    pub fn read(file: &YamlFile) -> Result<EngineSettings> {
        let Some(node) = file.get("engine") else {
            return Ok(EngineSettings::default());
        };
        match &node.value {
            Value::Str(_) => Ok(EngineSettings {
                name: Some(file.text_of(node, "engine")?),
                ..EngineSettings::default()
            }),
            Value::Map(entries) => {
                let entries = file.keys(
                    entries.clone(),
                    &["name", "docker", "podman", "containerd"],
                    "engine setting",
                )?;
                let mut settings = EngineSettings::default();
                for (key, value) in &entries {
                    if value.value == Value::Null {
                        continue;
                    }
                    match key.as_str() {
                        "name" => settings.name = Some(file.text_of(value, "engine.name")?),
                        "docker" => {
                            let [host] = section(file, value, "docker", &["host"])?;
                            settings.docker_host = host;
                        }
                        "podman" => {
                            let [socket] = section(file, value, "podman", &["socket"])?;
                            settings.podman_socket = socket;
                        }
                        _ => {
                            let [address, namespace, snapshotter] = section(
                                file,
                                value,
                                "containerd",
                                &["address", "namespace", "snapshotter"],
                            )?;
                            settings.containerd_address = address;
                            settings.containerd_namespace = namespace;
                            settings.containerd_snapshotter = snapshotter;
                        }
                    }
                }
                Ok(settings)
            }
            other => Err(file.error(
                node,
                format!(
                    "`engine` must be a name (docker, podman, containerd, auto) or a mapping with `name:` and \
                     per-engine settings, found {}",
                    other.type_name()
                ),
            )),
        }
    }

    /// Each field of `self`, else of `fallback`.
    pub fn or(self, fallback: &EngineSettings) -> EngineSettings {
        let pick = |a: Option<String>, b: &Option<String>| a.or_else(|| b.clone());
        EngineSettings {
            name: pick(self.name, &fallback.name),
            docker_host: pick(self.docker_host, &fallback.docker_host),
            podman_socket: pick(self.podman_socket, &fallback.podman_socket),
            containerd_address: pick(self.containerd_address, &fallback.containerd_address),
            containerd_namespace: pick(self.containerd_namespace, &fallback.containerd_namespace),
            containerd_snapshotter: pick(
                self.containerd_snapshotter,
                &fallback.containerd_snapshotter,
            ),
        }
    }
}

/// The text values of `keys` in the mapping `node` (`engine.<name>`).
fn section<const N: usize>(
    file: &YamlFile,
    node: &Node,
    name: &str,
    keys: &[&str; N],
) -> Result<[Option<String>; N]> {
    let Value::Map(entries) = &node.value else {
        return Err(file.error(
            node,
            format!("`engine.{name}` must be a mapping with {}", keys.join(", ")),
        ));
    };
    let entries = file.keys(entries.clone(), keys, &format!("engine.{name} setting"))?;
    let mut values: [Option<String>; N] = std::array::from_fn(|_| None);
    for (key, value) in &entries {
        if value.value == Value::Null {
            continue;
        }
        let index = keys.iter().position(|k| k == key).expect("known key");
        values[index] = Some(file.text_of(value, &format!("engine.{name}.{key}"))?);
    }
    Ok(values)
}
