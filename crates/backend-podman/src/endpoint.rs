//! Where the Podman API service listens, decided the way the podman remote client decides it.
//!
//! An explicit address wins; otherwise `CONTAINER_HOST`; otherwise a connection `podman system connection add`
//! recorded (by name from `CONTAINER_CONNECTION`, else the default one; see [`crate::connections`]); otherwise
//! the per-user socket
//! `$XDG_RUNTIME_DIR/podman/podman.sock` for a non-root user and `/run/podman/podman.sock` for root. An
//! address is a local socket (`unix:///path` or a path) or a remote one,
//! `ssh://user@host[:port]/run/user/UID/podman/podman.sock`, reached with the key of `CONTAINER_SSHKEY` (or
//! ssh's own configuration) through [`berth_http::ssh`]. The environment variables this crate reads are named
//! here and nowhere else.

use std::path::{Path, PathBuf};

use berth_core::{Error, Result};
use berth_http::ssh::SshTarget;

use crate::connections::CONTAINER_CONNECTION;
use crate::ENGINE;

/// Environment variable naming the service (`unix:///path`), as for `podman --remote`.
pub const CONTAINER_HOST: &str = "CONTAINER_HOST";
/// Environment variable naming the private key for `ssh://` addresses, as for `podman --remote`.
pub const CONTAINER_SSHKEY: &str = "CONTAINER_SSHKEY";
/// Environment variable naming the user's runtime folder, which holds the rootless socket.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";
/// The socket of the rootful service.
pub const ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";

/// Where the service listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Address {
    /// A socket on this machine.
    Unix(PathBuf),
    /// A socket on another machine, reached over SSH.
    Ssh {
        /// The host and how to log in.
        target: SshTarget,
        /// The socket's path on that host.
        socket: String,
    },
}

impl Address {
    /// The address as users write it.
    pub(crate) fn display(&self) -> String {
        match self {
            Address::Unix(path) => format!("unix://{}", path.display()),
            Address::Ssh { target, socket } => format!("{}{socket}", target.display()),
        }
    }

    /// The uid the service runs as, where the address tells it: a local socket's owner (a Podman service
    /// creates its socket as the user it runs as), a remote one's `/run/user/UID/` folder, else root.
    pub(crate) fn service_uid(&self) -> u32 {
        use std::os::unix::fs::MetadataExt as _;
        match self {
            Address::Unix(path) => std::fs::metadata(path).map_or(0, |m| m.uid()),
            Address::Ssh { socket, .. } => socket
                .strip_prefix("/run/user/")
                .and_then(|rest| rest.split('/').next()?.parse().ok())
                .unwrap_or(0),
        }
    }
}

/// The address to use: `explicit` (a path or URL), else `CONTAINER_HOST`, else a connection `podman system
/// connection add` recorded (`connection` by name, else `CONTAINER_CONNECTION`, else the default one), else the
/// default socket. `key` is the private key for an `ssh://` address (else `CONTAINER_SSHKEY`, else the
/// connection's identity).
pub(crate) fn resolve(
    explicit: Option<&str>,
    key: Option<&str>,
    connection: Option<&str>,
) -> Result<Address> {
    let env_host = std::env::var(CONTAINER_HOST).ok().filter(|h| !h.is_empty());
    let key = key
        .map(str::to_string)
        .or_else(|| std::env::var(CONTAINER_SSHKEY).ok())
        .filter(|k| !k.is_empty());
    if let Some(host) = explicit.map(str::to_string).or(env_host) {
        return parse(&host, key.map(PathBuf::from));
    }
    let named = connection
        .map(str::to_string)
        .or_else(|| std::env::var(CONTAINER_CONNECTION).ok())
        .filter(|n| !n.is_empty());
    if let Some(recorded) = crate::connections::find(named.as_deref())? {
        let key = key.map(PathBuf::from).or(recorded.identity);
        return parse(&recorded.uri, key);
    }
    Ok(Address::Unix(default_socket(
        is_root(),
        std::env::var_os(XDG_RUNTIME_DIR).map(PathBuf::from),
    )))
}

fn parse(host: &str, key: Option<PathBuf>) -> Result<Address> {
    let invalid = |why: &str| {
        Error::invalid(format!("podman host `{host}`: {why}"))
            .with_engine(ENGINE)
            .with_operation(berth_core::Operation::Connect)
            .with_hint(format!(
                "set {CONTAINER_HOST} (or berth.yaml's engine.podman.socket) to unix:///PATH or \
                 ssh://USER@HOST[:PORT]/run/user/UID/podman/podman.sock"
            ))
    };
    if let Some(path) = host.strip_prefix("unix://") {
        if !path.is_empty() {
            return Ok(Address::Unix(PathBuf::from(path)));
        }
    } else if host.starts_with('/') {
        return Ok(Address::Unix(PathBuf::from(host)));
    } else if let Some(rest) = host.strip_prefix("ssh://") {
        let (authority, socket) = rest
            .split_once('/')
            .map(|(a, path)| (a, format!("/{path}")))
            .ok_or_else(|| invalid("an ssh:// address names the socket's path on the host"))?;
        if authority.is_empty() || socket.len() < 2 {
            return Err(invalid(
                "expected ssh://USER@HOST[:PORT]/PATH/TO/podman.sock",
            ));
        }
        let (destination, port) = match authority.rsplit_once(':') {
            Some((dest, port)) if !dest.is_empty() => {
                let port = port
                    .parse::<u16>()
                    .map_err(|_| invalid("the ssh port is not a number from 1 to 65535"))?;
                (dest.to_string(), Some(port))
            }
            _ => (authority.to_string(), None),
        };
        return Ok(Address::Ssh {
            target: SshTarget {
                destination,
                port,
                identity: key,
            },
            socket,
        });
    } else if host.contains("://") {
        return Err(Error::unsupported(
            ENGINE,
            "connect",
            format!("podman host `{host}`: berth reaches Podman through unix:// or ssh:// only"),
        ));
    }
    Err(invalid("expected unix:///PATH or ssh://USER@HOST/PATH"))
}

fn default_socket(root: bool, runtime_dir: Option<PathBuf>) -> PathBuf {
    match runtime_dir {
        Some(dir) if !root => dir.join("podman").join("podman.sock"),
        _ => PathBuf::from(ROOTFUL_SOCKET),
    }
}

/// Whether this process runs as root: `/proc/self` belongs to the effective user.
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

/// How to start the service at `address`: [`start_hint`] for a local socket, the same command run on the
/// remote host for a remote one.
pub(crate) fn start_hint_for(address: &Address) -> String {
    match address {
        Address::Unix(path) => start_hint(path),
        Address::Ssh { target, socket } => format!(
            "start the service on the remote host, as the user the socket belongs to: `ssh {} podman system \
             service --time=0 unix://{socket}` (or `systemctl --user start podman.socket` there)",
            target.destination
        ),
    }
}

/// The command that starts a service listening on `socket`, for whoever runs berth: root starts the system
/// unit (no `sudo`, no `--user`), another user their own unit, or asks root for the system one.
pub(crate) fn start_hint(socket: &Path) -> String {
    start_hint_as(socket, is_root())
}

fn start_hint_as(socket: &Path, root: bool) -> String {
    let service = format!("podman system service --time=0 unix://{}", socket.display());
    match (root, socket == Path::new(ROOTFUL_SOCKET)) {
        (true, true) => {
            format!("start the service: `systemctl start podman.socket`, or `{service} &`")
        }
        (true, false) => format!("start a service there: `{service} &`"),
        (false, true) => {
            format!("start the service: `sudo systemctl start podman.socket`, or `sudo {service}`")
        }
        (false, false) => {
            format!("start the service: `systemctl --user start podman.socket`, or `{service}`")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sockets_and_refuses_other_schemes() {
        let unix = |p: &str| Address::Unix(PathBuf::from(p));
        assert_eq!(
            parse("unix:///run/p.sock", None).expect("unix"),
            unix("/run/p.sock")
        );
        assert_eq!(
            parse("/run/p.sock", None).expect("path"),
            unix("/run/p.sock")
        );
        assert_eq!(
            parse("tcp://box:8080", None).expect_err("tcp").kind(),
            berth_core::ErrorKind::Unsupported
        );
        for bad in [
            "unix://",
            "ssh://me@box",
            "ssh://me@box/",
            "ssh:///run/p.sock",
            "ssh://me@box:x/a",
            "box",
        ] {
            assert!(parse(bad, None).is_err(), "{bad}");
        }
    }

    #[test]
    fn ssh_addresses_keep_user_port_path_and_key() {
        let key = Some(PathBuf::from("/k/id"));
        let address = parse(
            "ssh://me@box:2222/run/user/1003/podman/podman.sock",
            key.clone(),
        )
        .expect("ssh");
        assert_eq!(
            address,
            Address::Ssh {
                target: SshTarget {
                    destination: "me@box".into(),
                    port: Some(2222),
                    identity: key,
                },
                socket: "/run/user/1003/podman/podman.sock".into(),
            }
        );
        assert_eq!(address.service_uid(), 1003);
        assert_eq!(
            address.display(),
            "ssh://me@box:2222/run/user/1003/podman/podman.sock"
        );
        let rootful = parse("ssh://root@box/run/podman/podman.sock", None).expect("ssh");
        assert_eq!(rootful.service_uid(), 0);
    }

    #[test]
    fn root_is_told_to_start_the_system_unit_without_sudo_or_user() {
        let root = start_hint_as(Path::new(ROOTFUL_SOCKET), true);
        assert!(root.contains("`systemctl start podman.socket`"), "{root}");
        assert!(!root.contains("--user") && !root.contains("sudo"), "{root}");
        let elsewhere = start_hint_as(Path::new("/tmp/p.sock"), true);
        assert!(!elsewhere.contains("--user"), "{elsewhere}");
        let user = start_hint_as(Path::new("/run/user/7/podman/podman.sock"), false);
        assert!(
            user.contains("systemctl --user start podman.socket"),
            "{user}"
        );
    }

    #[test]
    fn users_get_their_runtime_socket_and_root_the_system_one() {
        let dir = Some(PathBuf::from("/run/user/1001"));
        assert_eq!(
            default_socket(false, dir.clone()),
            PathBuf::from("/run/user/1001/podman/podman.sock")
        );
        assert_eq!(default_socket(true, dir), PathBuf::from(ROOTFUL_SOCKET));
        assert_eq!(default_socket(false, None), PathBuf::from(ROOTFUL_SOCKET));
    }
}
