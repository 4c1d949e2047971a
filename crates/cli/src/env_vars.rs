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
}
