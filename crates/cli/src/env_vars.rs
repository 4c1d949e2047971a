//! Every environment variable berth's CLI reads, named in one place. The engine's (`BERTH_ENGINE`, and each
//! engine's own such as `DOCKER_HOST`) are named by `berth_engines` and the engines' providers; those `berth
//! doctor` reads about the machine (`PATH`, `USER`) by `berth_core::doctor::machine`.

/// Names of the environment variables berth reads.
pub struct EnvVars;

impl EnvVars {
    /// Folder for berth's caches (source digests). Default: `$XDG_CACHE_HOME/berth`, then `~/.cache/berth`.
    pub const BERTH_CACHE_DIR: &'static str = "BERTH_CACHE_DIR";
    /// XDG cache home.
    pub const XDG_CACHE_HOME: &'static str = "XDG_CACHE_HOME";
    /// The user's home folder.
    pub const HOME: &'static str = "HOME";
}

impl EnvVars {
    /// The user's config file (default `$XDG_CONFIG_HOME/berth/config.yaml`, then `~/.config/berth/config.yaml`).
    pub const BERTH_CONFIG: &'static str = "BERTH_CONFIG";
    /// XDG config home.
    pub const XDG_CONFIG_HOME: &'static str = "XDG_CONFIG_HOME";
    /// Registry for specs that name none (over the project and user files).
    pub const BERTH_REGISTRY: &'static str = "BERTH_REGISTRY";
    /// Who pushes Docker and Podman images: `berth` (default) or `engine` (`--push-via`).
    pub const BERTH_PUSH_VIA: &'static str = "BERTH_PUSH_VIA";
    /// The image of tasks that name none (over the project and user files).
    pub const BERTH_DEFAULT_IMAGE: &'static str = "BERTH_DEFAULT_IMAGE";
}
