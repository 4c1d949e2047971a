//! How to reach LXD and where berth keeps this backend's state: options, their environment variables and
//! defaults.

use std::path::{Path, PathBuf};

use berth_registry::RegistryOptions;

/// Where LXD keeps its socket when installed from a distribution package (Debian, Ubuntu's deb).
pub const PACKAGE_DIR: &str = "/var/lib/lxd";
/// Where the snap keeps it.
pub const SNAP_DIR: &str = "/var/snap/lxd/common/lxd";
/// Where berth keeps its images, layers, caches and step cache for LXD when running as root.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/berth/lxd";

/// The environment variables this backend reads, in one place.
#[derive(Debug)]
pub struct EnvVars;

impl EnvVars {
    /// LXD's own variable for its folder (the socket is `unix.socket` in it), as `lxc` and `lxd` read it.
    pub const LXD_DIR: &'static str = "LXD_DIR";
    /// berth's state folder for this backend.
    pub const BERTH_LXD_STATE_DIR: &'static str = "BERTH_LXD_STATE_DIR";
    /// The lxc remote to build on (`engine.lxd.remote`); unset, the local server.
    pub const BERTH_LXD_REMOTE: &'static str = "BERTH_LXD_REMOTE";
    /// lxc's own variable for its configuration folder (`config.yml`, `client.crt`, `servercerts/`).
    pub const LXD_CONF: &'static str = "LXD_CONF";
    /// The LXD storage pool berth's build containers' root disks are on (else the default profile's).
    pub const BERTH_LXD_POOL: &'static str = "BERTH_LXD_POOL";
}

/// Options for [`crate::LxdEngine::connect`]; `None` fields come from the environment, then defaults.
#[derive(Debug, Clone, Default)]
pub struct LxdOptions {
    /// LXD's folder (holding `unix.socket`, and `containers/` whose root folders berth reads after each step).
    pub lxd_dir: Option<PathBuf>,
    /// The lxc remote (a name from lxc's `config.yml`, as `lxc remote add` made it) to reach over HTTPS
    /// instead of the local socket.
    pub remote: Option<String>,
    /// lxc's configuration folder the remote is read from (default: `LXD_CONF`, else lxc's usual folders).
    pub lxd_conf: Option<PathBuf>,
    /// berth's state folder: the OCI image store, cache mounts, the step cache, helper image roots.
    pub state_dir: Option<PathBuf>,
    /// The storage pool of the build containers' root disks (where a RUN step's writes land); `None` reads
    /// `BERTH_LXD_POOL`, else the default profile's root disk decides.
    pub pool: Option<String>,
    /// Registry client options (insecure registries, CA file, retries, credential lookup) for pulls and pushes.
    pub registry: RegistryOptions,
    /// The front end's one registry client, reused for every pull and push that it fits (its options then
    /// stand in for `registry`).
    pub client: Option<berth_registry::RegistryClient>,
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

impl LxdOptions {
    /// LXD's folder these options name: the option, else `LXD_DIR`, else the package's folder if its socket
    /// exists, else the snap's if its socket exists, else the package's.
    pub fn lxd_dir(&self) -> PathBuf {
        if let Some(dir) = self
            .lxd_dir
            .clone()
            .or_else(|| var(EnvVars::LXD_DIR).map(PathBuf::from))
        {
            return dir;
        }
        [PACKAGE_DIR, SNAP_DIR]
            .iter()
            .map(PathBuf::from)
            .find(|dir| dir.join("unix.socket").exists())
            .unwrap_or_else(|| PathBuf::from(PACKAGE_DIR))
    }

    /// The remote these options name, if any: the option, else `BERTH_LXD_REMOTE`.
    pub fn remote_name(&self) -> Option<String> {
        self.remote
            .clone()
            .filter(|r| !r.is_empty())
            .or_else(|| var(EnvVars::BERTH_LXD_REMOTE))
    }

    /// The remote these options name, read from lxc's configuration; `None` for the local server.
    pub fn remote(&self) -> berth_core::Result<Option<crate::remote::Remote>> {
        let Some(name) = self.remote_name() else {
            return Ok(None);
        };
        let dir = crate::remote::conf_dir(self.lxd_conf.as_deref());
        crate::remote::find(&dir, &name).map(Some)
    }

    /// The socket these options name.
    pub fn socket(&self) -> PathBuf {
        socket_in(&self.lxd_dir())
    }

    /// The storage pool these options name, if any.
    pub(crate) fn pool(&self) -> Option<String> {
        self.pool.clone().or_else(|| var(EnvVars::BERTH_LXD_POOL))
    }

    pub(crate) fn state_dir(&self) -> PathBuf {
        self.state_dir
            .clone()
            .or_else(|| var(EnvVars::BERTH_LXD_STATE_DIR).map(PathBuf::from))
            .unwrap_or_else(|| PathBuf::from(DEFAULT_STATE_DIR))
    }
}

/// The socket in LXD folder `dir`.
pub(crate) fn socket_in(dir: &Path) -> PathBuf {
    dir.join("unix.socket")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_explicit_folder_wins() {
        let options = LxdOptions {
            lxd_dir: Some("/tmp/lxd-x".into()),
            ..LxdOptions::default()
        };
        assert_eq!(options.socket(), PathBuf::from("/tmp/lxd-x/unix.socket"));
    }
}
