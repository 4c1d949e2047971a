//! The remote LXD server of `scripts/env/remote-lxd.sh` (https://10.203.0.2:8443 in the network namespace
//! `berth-remote`), reached as lxc reaches it: through the lxc configuration `lxc remote add` wrote for the test
//! (client certificate trusted by the server, server certificate pinned).

use std::path::{Path, PathBuf};

/// The remote's name in the test's lxc configuration.
pub fn remote_name() -> String {
    std::env::var("BERTH_TEST_REMOTE_LXD").unwrap_or_else(|_| "berth-remote".into())
}

/// An lxc configuration folder made by `scripts/env/remote-lxd.sh`: `client` (trusted) or `untrusted`, unless
/// `var` names another.
pub fn conf(which: &str, var: &str) -> PathBuf {
    let dir = std::env::var_os(var).map(PathBuf::from).unwrap_or_else(|| {
        let state =
            std::env::var("BERTH_TEST_ENV_STATE").unwrap_or_else(|_| "/var/lib/berth-env".into());
        Path::new(&state).join("remote-lxd").join(which)
    });
    assert!(
        dir.join("config.yml").is_file(),
        "no lxc configuration for the remote LXD in {}: run scripts/env/up.sh (as root)",
        dir.display()
    );
    dir
}

/// The configuration whose client certificate the remote trusts.
pub fn trusted() -> PathBuf {
    conf("client", "BERTH_TEST_REMOTE_LXD_CONF")
}
