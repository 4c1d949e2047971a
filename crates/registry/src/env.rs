//! Every environment variable this crate reads, named in one place.

/// Names of the environment variables berth-registry reads (through [`crate::CredentialResolver`] only).
pub struct EnvVars;

impl EnvVars {
    /// User name for registry credentials given in the environment (with [`Self::BERTH_REGISTRY_PASSWORD`]).
    pub const BERTH_REGISTRY_USERNAME: &'static str = "BERTH_REGISTRY_USERNAME";
    /// Password or token for registry credentials given in the environment.
    pub const BERTH_REGISTRY_PASSWORD: &'static str = "BERTH_REGISTRY_PASSWORD";
    /// The registry host the environment credentials are for; unset means they apply to every registry.
    pub const BERTH_REGISTRY_HOST: &'static str = "BERTH_REGISTRY_HOST";
    /// Docker's configuration folder (holding `config.json`); default `~/.docker`.
    pub const DOCKER_CONFIG: &'static str = "DOCKER_CONFIG";
    /// Podman's (containers/image's) auth file, overriding its default locations.
    pub const REGISTRY_AUTH_FILE: &'static str = "REGISTRY_AUTH_FILE";
    /// The user's runtime folder: Podman keeps `containers/auth.json` there.
    pub const XDG_RUNTIME_DIR: &'static str = "XDG_RUNTIME_DIR";
    /// The user's config folder: Podman's persistent `containers/auth.json`; default `~/.config`.
    pub const XDG_CONFIG_HOME: &'static str = "XDG_CONFIG_HOME";
    /// The user's home folder.
    pub const HOME: &'static str = "HOME";
    /// Where `docker-credential-*` helpers are looked up.
    pub const PATH: &'static str = "PATH";
}
