//! The `engine:` setting of a project or user file: a name, or a name with connection settings per engine.
//! The sections and their keys are the engine table's (each provider's settings), so a new backend needs
//! nothing here.
//!
//! ```yaml
//! engine: podman
//! # or
//! engine:
//!   name: auto                      # docker | podman | containerd | auto
//!   docker: {host: unix:///var/run/docker.sock}   # or {host: tcp://HOST:2376, tls_verify: true,
//!                                                 #     cert_path: /path/to/certs}, or {context: NAME}
//!   podman: {socket: unix:///run/user/1000/podman/podman.sock}
//!   containerd: {address: /run/containerd/containerd.sock, namespace: default, snapshotter: overlayfs}
//! ```

use berth_core::yaml::{Node, Value};
use berth_core::Result;
use berth_engines::EngineKind;

use super::file::YamlFile;

/// Engine name and connection settings from one file; unset ones fall through to the next source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineSettings {
    /// An engine's name or auto.
    pub name: Option<String>,
    /// `engine.<engine>.<key>` values: engine, key, value.
    values: Vec<(&'static str, &'static str, String)>,
}

impl EngineSettings {
    /// Reads the `engine` entry of `file`, if any.
    pub fn read(file: &YamlFile) -> Result<EngineSettings> {
        let Some(node) = file.get("engine") else {
            return Ok(EngineSettings::default());
        };
        let engines: Vec<EngineKind> = berth_engines::providers().collect();
        match &node.value {
            Value::Str(_) => Ok(EngineSettings {
                name: Some(file.text_of(node, "engine")?),
                ..EngineSettings::default()
            }),
            Value::Map(entries) => {
                let known: Vec<&str> = std::iter::once("name")
                    .chain(engines.iter().map(|k| k.name()))
                    .collect();
                let entries = file.keys(entries.clone(), &known, "engine setting")?;
                let mut settings = EngineSettings::default();
                for (key, value) in &entries {
                    if value.value == Value::Null {
                        continue;
                    }
                    match engines.iter().find(|k| k.name() == key) {
                        Some(kind) => settings.read_section(file, *kind, value)?,
                        None => settings.name = Some(file.text_of(value, "engine.name")?),
                    }
                }
                Ok(settings)
            }
            other => Err(file.error(
                node,
                format!(
                    "`engine` must be a name ({}, auto) or a mapping with `name:` and per-engine settings, \
                     found {}",
                    berth_engines::names(", "),
                    other.type_name()
                ),
            )),
        }
    }

    /// The value of `engine.<engine>.<key>`, if the file sets it.
    pub fn get(&self, engine: &str, key: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(e, k, _)| *e == engine && *k == key)
            .map(|(_, _, v)| v.as_str())
    }

    /// The values of the mapping `node` (`engine.<kind>`), whose keys are `kind`'s settings.
    fn read_section(&mut self, file: &YamlFile, kind: EngineKind, node: &Node) -> Result<()> {
        let name = kind.name();
        let keys: Vec<&'static str> = kind.info().settings().map(|s| s.key).collect();
        let Value::Map(entries) = &node.value else {
            return Err(file.error(
                node,
                format!("`engine.{name}` must be a mapping with {}", keys.join(", ")),
            ));
        };
        let entries = file.keys(entries.clone(), &keys, &format!("engine.{name} setting"))?;
        for (key, value) in &entries {
            let Some(key) = keys.iter().find(|k| *k == key) else {
                continue; // `keys` refused every other key above
            };
            let text = match &value.value {
                Value::Null => continue,
                // a switch (`tls_verify: true`) is kept as its word; the engine reads it
                Value::Bool(on) => on.to_string(),
                _ => file.text_of(value, &format!("engine.{name}.{key}"))?,
            };
            self.values.push((name, key, text));
        }
        Ok(())
    }
}
