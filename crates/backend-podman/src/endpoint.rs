//! Where the Podman API service listens, decided the way the podman remote client decides it.
//!
//! An explicit socket wins; otherwise `CONTAINER_HOST` (`unix://` only); otherwise the per-user socket
//! `$XDG_RUNTIME_DIR/podman/podman.sock` for a non-root user and `/run/podman/podman.sock` for root. The
//! environment variables this crate reads are named here and nowhere else.

use std::path::{Path, PathBuf};

use berth_core::{Error, Result};

use crate::ENGINE;

/// Environment variable naming the service (`unix:///path`), as for `podman --remote`.
pub const CONTAINER_HOST: &str = "CONTAINER_HOST";
/// Environment variable naming the user's runtime folder, which holds the rootless socket.
pub const XDG_RUNTIME_DIR: &str = "XDG_RUNTIME_DIR";
/// The socket of the rootful service.
pub const ROOTFUL_SOCKET: &str = "/run/podman/podman.sock";

/// The socket to use: `explicit` (a path or `unix://` URL), else the environment, else the default.
pub(crate) fn resolve(explicit: Option<&str>) -> Result<PathBuf> {
    let env_host = std::env::var(CONTAINER_HOST).ok().filter(|h| !h.is_empty());
    match explicit.map(str::to_string).or(env_host) {
        Some(host) => parse(&host),
        None => Ok(default_socket(
            is_root(),
            std::env::var_os(XDG_RUNTIME_DIR).map(PathBuf::from),
        )),
    }
}

fn parse(host: &str) -> Result<PathBuf> {
    if let Some(path) = host.strip_prefix("unix://") {
        if !path.is_empty() {
            return Ok(PathBuf::from(path));
        }
    } else if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    } else if host.contains("://") {
        return Err(Error::unsupported(
            ENGINE,
            "connect",
            format!("podman host `{host}`: berth reaches Podman through a unix socket only"),
        )
        .with_hint("forward the remote socket (`ssh -L /tmp/podman.sock:/run/podman/podman.sock HOST`) and use unix:///tmp/podman.sock"));
    }
    Err(
        Error::invalid(format!("podman host `{host}`: expected unix:///PATH"))
            .with_engine(ENGINE)
            .with_operation(berth_core::Operation::Connect),
    )
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
        assert_eq!(
            parse("unix:///run/p.sock").expect("unix"),
            PathBuf::from("/run/p.sock")
        );
        assert_eq!(
            parse("/run/p.sock").expect("path"),
            PathBuf::from("/run/p.sock")
        );
        assert_eq!(
            parse("ssh://me@box/run/podman/podman.sock")
                .expect_err("ssh")
                .kind(),
            berth_core::ErrorKind::Unsupported
        );
        assert!(parse("unix://").is_err());
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
