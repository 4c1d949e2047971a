//! Remote LXD servers as `lxc` knows them: berth reads lxc's own configuration (what `lxc remote add` wrote)
//! rather than asking for addresses and certificates again.
//!
//! The configuration folder is `LXD_CONF`, else `~/.config/lxc`, else the snap's `~/snap/lxd/common/config`
//! (the first that has a `config.yml`). In it, `config.yml` names the remotes (`remotes: NAME: {addr,
//! protocol}`), `client.crt` and `client.key` are the certificate lxc presents to every server, and
//! `servercerts/NAME.crt` is the server certificate `lxc remote add` accepted, which is the only one trusted for
//! that remote afterwards (as lxc does).

use std::path::{Path, PathBuf};

use berth_core::yaml::{self, Value};
use berth_core::{ErrorKind, Operation, Result};

use crate::errors::error;
use crate::options::EnvVars;

/// LXD's default HTTPS port, used when a remote's address has none.
const DEFAULT_PORT: u16 = 8443;

/// One remote LXD server from lxc's configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remote {
    /// Its name in lxc's configuration.
    pub name: String,
    /// `host:port` to dial.
    pub addr: String,
    /// lxc's configuration folder it was read from.
    pub conf_dir: PathBuf,
}

impl Remote {
    /// The client certificate lxc presents.
    pub fn client_cert(&self) -> PathBuf {
        self.conf_dir.join("client.crt")
    }

    /// Its private key.
    pub fn client_key(&self) -> PathBuf {
        self.conf_dir.join("client.key")
    }

    /// The server certificate `lxc remote add` accepted for this remote.
    pub fn server_cert(&self) -> PathBuf {
        self.conf_dir
            .join("servercerts")
            .join(format!("{}.crt", self.name))
    }

    /// The server's address as it appears in messages.
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

/// lxc's configuration folder: `explicit` (berth's option), else `LXD_CONF`, else `~/.config/lxc` or the
/// snap's `~/snap/lxd/common/config`, whichever has a `config.yml` (the first when neither does).
pub fn conf_dir(explicit: Option<&Path>) -> PathBuf {
    if let Some(dir) = explicit {
        return dir.to_path_buf();
    }
    if let Some(dir) = std::env::var_os(EnvVars::LXD_CONF).filter(|v| !v.is_empty()) {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").map_or_else(|| PathBuf::from("/root"), PathBuf::from);
    let candidates = [
        home.join(".config/lxc"),
        home.join("snap/lxd/common/config"),
    ];
    candidates
        .iter()
        .find(|dir| dir.join("config.yml").is_file())
        .unwrap_or(&candidates[0])
        .clone()
}

const OP: Operation = Operation::Connect;

/// Remote `name` from the configuration in `conf_dir`.
pub fn find(conf_dir: &Path, name: &str) -> Result<Remote> {
    let file = conf_dir.join("config.yml");
    let text = std::fs::read_to_string(&file).map_err(|e| {
        error(
            ErrorKind::InvalidSpec,
            OP,
            format!("LXD remote {name}: cannot read lxc's configuration {}: {e}", file.display()),
        )
        .with_hint(format!(
            "add the remote with `lxc remote add {name} https://HOST:8443` as this user, or point {} at \
             the lxc configuration folder that has it",
            EnvVars::LXD_CONF
        ))
    })?;
    parse(&text, name, conf_dir).map_err(|why| {
        error(
            ErrorKind::InvalidSpec,
            OP,
            format!("LXD remote {name} in {}: {why}", file.display()),
        )
        .with_hint(format!(
            "`lxc remote list` shows the remotes; add it with `lxc remote add {name} https://HOST:8443`, or \
             set {} to one of them",
            EnvVars::BERTH_LXD_REMOTE
        ))
    })
}

/// Remote `name` from the text of a `config.yml`, or why it is not usable.
pub(crate) fn parse(
    text: &str,
    name: &str,
    conf_dir: &Path,
) -> std::result::Result<Remote, String> {
    let root = yaml::load(text)
        .map_err(|e| format!("line {}: {}", e.mark.line, e.message))?
        .map(|node| node.value);
    let remotes = root.as_ref().and_then(|root| get(root, "remotes"));
    let Some(remote) = remotes.and_then(|remotes| get(remotes, name)) else {
        let known: Vec<&str> = remotes
            .and_then(|r| match r {
                Value::Map(entries) => Some(
                    entries
                        .iter()
                        .filter_map(|(k, _)| k.value.as_str())
                        .collect(),
                ),
                _ => None,
            })
            .unwrap_or_default();
        return Err(format!(
            "no such remote (lxc knows: {})",
            if known.is_empty() {
                "none".to_string()
            } else {
                known.join(", ")
            }
        ));
    };
    let protocol = get(remote, "protocol")
        .and_then(Value::as_str)
        .unwrap_or("lxd");
    if protocol != "lxd" {
        return Err(format!(
            "it is an image server (protocol {protocol}), not an LXD server berth can build on"
        ));
    }
    let addr = get(remote, "addr")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let addr = match addr.strip_prefix("https://") {
        Some(rest) => rest.trim_end_matches('/'),
        None if addr.starts_with("unix:") => {
            return Err(format!(
                "it is a local socket ({addr}): leave {} unset and berth uses the local server",
                EnvVars::BERTH_LXD_REMOTE
            ))
        }
        None => return Err(format!("its address {addr:?} is not https://HOST[:PORT]")),
    };
    if addr.is_empty() || addr.contains('/') {
        return Err(format!(
            "its address https://{addr} is not https://HOST[:PORT]"
        ));
    }
    // a port is the part after the last colon, unless that colon is inside an IPv6 literal's brackets
    let has_port = addr
        .rsplit_once(':')
        .is_some_and(|(_, port)| !port.ends_with(']'))
        && (!addr.starts_with('[') || addr.contains("]:"));
    let addr = if has_port {
        addr.to_string()
    } else {
        format!("{addr}:{DEFAULT_PORT}")
    };
    Ok(Remote {
        name: name.to_string(),
        addr,
        conf_dir: conf_dir.to_path_buf(),
    })
}

/// The value under `key` in mapping `map`.
fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    match map {
        Value::Map(entries) => entries
            .iter()
            .rev()
            .find(|(k, _)| k.value.as_str() == Some(key))
            .map(|(_, v)| &v.value),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `lxc remote add` writes (LXD 5.0), with the default remotes beside it.
    const CONFIG: &str = "default-remote: local
remotes:
  build:
    addr: https://10.203.0.2:8443
    auth_type: tls
    project: default
    protocol: lxd
    public: false
  noport:
    addr: https://lxd.example.com
    protocol: lxd
  v6:
    addr: https://[fd00::2]
  images:
    addr: https://images.linuxcontainers.org
    protocol: simplestreams
    public: true
  local:
    addr: unix://
    public: false
aliases: {}
";

    fn remote(name: &str) -> std::result::Result<Remote, String> {
        parse(CONFIG, name, Path::new("/conf"))
    }

    #[test]
    fn a_remote_is_its_address_and_lxc_files() {
        let build = remote("build").expect("build");
        assert_eq!(build.addr, "10.203.0.2:8443");
        assert_eq!(
            build.server_cert(),
            Path::new("/conf/servercerts/build.crt")
        );
        assert_eq!(build.client_cert(), Path::new("/conf/client.crt"));
        assert_eq!(build.client_key(), Path::new("/conf/client.key"));
    }

    #[test]
    fn an_address_without_a_port_gets_lxds() {
        assert_eq!(
            remote("noport").expect("noport").addr,
            "lxd.example.com:8443"
        );
        assert_eq!(remote("v6").expect("v6").addr, "[fd00::2]:8443");
    }

    #[test]
    fn what_is_not_an_lxd_server_is_refused_with_the_reason() {
        assert!(remote("images")
            .expect_err("images")
            .contains("image server"));
        assert!(remote("local").expect_err("local").contains("local socket"));
        let missing = remote("nope").expect_err("nope");
        assert!(
            missing.contains("build, noport, v6, images, local"),
            "{missing}"
        );
        assert!(parse("remotes: [", "x", Path::new("/")).is_err());
        assert!(parse("", "x", Path::new("/"))
            .expect_err("empty")
            .contains("none"));
    }
}
