//! The remote host of `scripts/env/remote-ssh.sh`: sshd on 10.203.0.2 inside the network namespace
//! `berth-remote`, its rootful and rootless (user `berth-remote`) Podman services, and root's key for it.
//!
//! Read like [`crate::env::TestEnv`]: process variables first, then the env file; anything missing is a
//! panic saying to run `scripts/env/up.sh` (a remote test fails without its remote, never skips).

use std::path::PathBuf;

use crate::env::required_settings;

/// The variables' names.
pub mod names {
    /// The remote host's address.
    pub const ADDR: &str = "BERTH_TEST_REMOTE_ADDR";
    /// Root's private key, authorized for `root` and the rootless user there.
    pub const SSH_KEY: &str = "BERTH_TEST_REMOTE_SSH_KEY";
    /// The rootless user on the remote host.
    pub const USER: &str = "BERTH_TEST_REMOTE_USER";
    /// The network namespace that is the remote host.
    pub const NETNS: &str = "BERTH_TEST_REMOTE_NETNS";
    /// The rootful Podman socket on the remote host.
    pub const PODMAN_SOCKET: &str = "BERTH_TEST_REMOTE_PODMAN_SOCKET";
    /// The rootless user's Podman socket on the remote host.
    pub const PODMAN_ROOTLESS_SOCKET: &str = "BERTH_TEST_REMOTE_PODMAN_ROOTLESS_SOCKET";
}

/// The remote host, as the tests reach it.
#[derive(Debug, Clone)]
pub struct RemoteEnv {
    /// e.g. `10.203.0.2`.
    pub addr: String,
    /// The network namespace that is the remote host, e.g. `berth-remote`.
    pub netns: String,
    /// Root's key for it.
    pub ssh_key: PathBuf,
    /// The rootless user.
    pub user: String,
    /// The rootful Podman socket there.
    pub podman_socket: String,
    /// The rootless user's Podman socket there.
    pub podman_rootless_socket: String,
}

impl RemoteEnv {
    /// The remote host's settings; panics with the fix when the environment lacks them.
    pub fn get() -> RemoteEnv {
        let var = required_settings(
            "the remote host's sshd and Podman services (scripts/env/remote-ssh.sh)",
        );
        RemoteEnv {
            addr: var(names::ADDR),
            netns: var(names::NETNS),
            ssh_key: var(names::SSH_KEY).into(),
            user: var(names::USER),
            podman_socket: var(names::PODMAN_SOCKET),
            podman_rootless_socket: var(names::PODMAN_ROOTLESS_SOCKET),
        }
    }

    /// Whether the engine at `endpoint` runs inside the remote host's network namespace: its Podman services
    /// do, and so does the remote LXD server (`https://ADDR:8443`, `scripts/env/remote-lxd.sh`); Docker over SSH
    /// reaches, through the remote host's `docker system dial-stdio`, the dockerd of /var/run/docker.sock, which
    /// is this machine's (the namespace shares its files).
    pub fn runs_on_remote_host(endpoint: &str) -> bool {
        if endpoint.contains("(lxc remote ") {
            return endpoint.starts_with(&format!("https://{}:", RemoteEnv::get().addr));
        }
        if !endpoint.starts_with("ssh://") {
            return false;
        }
        let remote = RemoteEnv::get();
        [&remote.podman_socket, &remote.podman_rootless_socket]
            .iter()
            .any(|socket| endpoint.ends_with(socket.as_str()))
    }

    /// The remote host's network namespace as `readlink /proc/self/ns/net` shows it there (`net:[INODE]`).
    pub fn network_namespace(&self) -> String {
        use std::os::unix::fs::MetadataExt as _;
        let path = format!("/var/run/netns/{}", self.netns);
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        format!("net:[{}]", meta.ino())
    }

    /// `ssh://root@ADDR/PATH` of the rootful Podman service.
    pub fn podman_url(&self) -> String {
        format!("ssh://root@{}{}", self.addr, self.podman_socket)
    }

    /// `ssh://root@ADDR`: Docker over SSH as root.
    pub fn docker_url(&self) -> String {
        format!("ssh://root@{}", self.addr)
    }

    /// `ssh://USER@ADDR/PATH` of the rootless user's Podman service.
    pub fn podman_rootless_url(&self) -> String {
        format!(
            "ssh://{}@{}{}",
            self.user, self.addr, self.podman_rootless_socket
        )
    }
}
