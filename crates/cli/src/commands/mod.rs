//! One module per subcommand.

pub mod access;
pub mod build;
pub mod config;
pub mod doctor;
pub mod engines;
pub mod exists;
pub mod flytekit;
pub mod login;
pub mod name;
pub mod push;
pub mod render;
pub mod verify_public;

use std::path::{Path, PathBuf};

use berth_core::spec::{load_spec_with, ImageSpec, SpecDefaults};
use berth_core::tag::Namer;
use berth_digest::DigestCache;

use crate::config::Config;
use crate::env_vars::EnvVars;

/// Loads the specs named on the command line; specs that name no registry get the configured one
/// (`BERTH_REGISTRY`, the project's or the user's `registry:`), as in a project build.
pub fn load_specs(paths: &[PathBuf]) -> berth_core::Result<Vec<ImageSpec>> {
    load_specs_with(paths, &Config::load()?)
}

/// [`load_specs`] with this run's files already read.
pub fn load_specs_with(paths: &[PathBuf], config: &Config) -> berth_core::Result<Vec<ImageSpec>> {
    let defaults = SpecDefaults {
        registry: config.registry().map(|s| s.value),
    };
    paths.iter().map(|p| load_spec_with(p, &defaults)).collect()
}

/// The specs named on the command line, each with its path; with none, a project's images (found walking up from
/// here), each with its name in `berth.yaml`. `command` names the command in the error when there is neither.
pub fn specs_or_project(
    paths: &[PathBuf],
    command: &str,
) -> berth_core::Result<Vec<(String, ImageSpec)>> {
    let config = Config::load()?;
    if !paths.is_empty() {
        let specs = load_specs_with(paths, &config)?;
        return Ok(paths
            .iter()
            .map(|p| p.display().to_string())
            .zip(specs)
            .collect());
    }
    let Some(project) = &config.project else {
        return Err(berth_core::Error::invalid(
            "no spec files given, and no berth.yaml in this folder or above",
        )
        .with_hint(format!(
            "name spec files (`berth {command} spec.yaml`), or run it in a berth.yaml project for all its images"
        )));
    };
    project.load_images(config.registry().map(|s| s.value))
}

/// A namer with the user's digest cache.
pub fn namer() -> Namer {
    Namer::new(cache_dir().map(|dir| DigestCache::open(&dir.join("digests"))))
}

/// berth's cache folder: `BERTH_CACHE_DIR`, else `$XDG_CACHE_HOME/berth`, else `~/.cache/berth`.
pub fn cache_dir() -> Option<PathBuf> {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    var(EnvVars::BERTH_CACHE_DIR)
        .or_else(|| var(EnvVars::XDG_CACHE_HOME).map(|d| d.join("berth")))
        .or_else(|| var(EnvVars::HOME).map(|h| Path::new(&h).join(".cache").join("berth")))
}
