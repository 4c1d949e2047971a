//! Every environment variable berth reads, named in one place.

/// Names of the environment variables berth reads.
pub struct EnvVars;

impl EnvVars {
    /// Folder for berth's caches (source digests). Default: `$XDG_CACHE_HOME/berth`, then `~/.cache/berth`.
    pub const BERTH_CACHE_DIR: &'static str = "BERTH_CACHE_DIR";
    /// XDG cache home.
    pub const XDG_CACHE_HOME: &'static str = "XDG_CACHE_HOME";
    /// The user's home folder.
    pub const HOME: &'static str = "HOME";
    /// The user's login name (when `/etc/passwd` does not have it).
    pub const USER: &'static str = "USER";
    /// Where programs are found (`berth doctor` looks for `podman`, `newuidmap`, `newgidmap`).
    pub const PATH: &'static str = "PATH";
}

impl EnvVars {
    /// Engine to use: docker, podman, containerd or auto.
    pub const BERTH_ENGINE: &'static str = "BERTH_ENGINE";
    /// Who pushes Docker and Podman images: `berth` (default) or `engine` (`--push-via`).
    pub const BERTH_PUSH_VIA: &'static str = "BERTH_PUSH_VIA";
    /// Docker's daemon address.
    pub const DOCKER_HOST: &'static str = "DOCKER_HOST";
    /// Podman's service address.
    pub const CONTAINER_HOST: &'static str = "CONTAINER_HOST";
    /// The user's runtime folder (rootless Podman's socket lives there).
    pub const XDG_RUNTIME_DIR: &'static str = "XDG_RUNTIME_DIR";
    /// containerd's socket.
    pub const CONTAINERD_ADDRESS: &'static str = "CONTAINERD_ADDRESS";
    /// containerd namespace.
    pub const CONTAINERD_NAMESPACE: &'static str = "CONTAINERD_NAMESPACE";
    /// The user's config file (default `$XDG_CONFIG_HOME/berth/config.yaml`, then `~/.config/berth/config.yaml`).
    pub const BERTH_CONFIG: &'static str = "BERTH_CONFIG";
    /// XDG config home.
    pub const XDG_CONFIG_HOME: &'static str = "XDG_CONFIG_HOME";
    /// Registry for specs that name none (over the project and user files).
    pub const BERTH_REGISTRY: &'static str = "BERTH_REGISTRY";
    /// The image of tasks that name none (over the project and user files).
    pub const BERTH_DEFAULT_IMAGE: &'static str = "BERTH_DEFAULT_IMAGE";
}
