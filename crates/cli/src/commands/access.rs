//! Reaching registries and engines from command-line options: one registry client per run (berth-workflow's
//! [`Registries`]), the engine chosen and announced, and opened for a workflow run when it first builds.

use std::sync::Arc;

use berth_core::engine::{
    Capabilities, ContainerEngine, ContainerEngineExt, Progress, ProgressEvent, RegistryAccess,
};
use berth_core::provider::Shared;
use berth_core::Result;
use berth_engines::{ChoiceSource, EngineKind};
use berth_registry::RegistryOptions;
use berth_workflow::OpenEngine;
pub use berth_workflow::Registries;

use crate::args::{EngineArgs, PushVia, RegistryArgs};
use crate::config::{Config, Setting};

/// Registry access for one run, from the command line's `--insecure-registry` and `--ca-file`.
pub fn registries(args: &RegistryArgs) -> Result<Registries> {
    Registries::new(args.insecure_registries.clone(), args.ca_file.clone())
}

/// [`registries`] for a command that pushes with an engine: `--push-via` counts too, and berth's own pushes keep
/// their record of pushed blobs in the user's cache folder.
pub fn engine_registries(args: &EngineArgs) -> Result<Registries> {
    let mut registries = registries(&args.registry)?;
    registries.push_via = match args.push_via {
        PushVia::Berth => berth_workflow::PushVia::Berth,
        PushVia::Export => berth_workflow::PushVia::Export,
        PushVia::Engine => berth_workflow::PushVia::Engine,
    };
    registries.pushed_record = super::cache_dir().map(|dir| dir.join("pushed"));
    Ok(registries)
}

/// The engine the user asked for (validated before any other work), connected only when needed.
pub struct EngineChoice {
    kind: EngineKind,
    source: ChoiceSource,
    config: Config,
    /// The setting that names the engine's address, if one does (its errors name it).
    named: Option<Setting>,
    /// What engines that use berth's registry client share (this run's one client), and the registry options
    /// to warn about when the chosen engine reaches registries itself.
    shared: Shared,
    registry: Option<RegistryOptions>,
}

impl EngineChoice {
    /// Chooses the engine as the user asked: an unknown name is an error right away.
    pub fn new(args: &EngineArgs) -> Result<Self> {
        EngineChoice::with_config(args, &Config::load()?)
    }

    /// [`EngineChoice::new`] with this run's files already read.
    pub fn with_config(args: &EngineArgs, config: &Config) -> Result<Self> {
        let (kind, source) = berth_engines::choose_with(args.engine.as_deref(), config)?;
        Ok(EngineChoice {
            kind,
            source,
            config: config.clone(),
            named: berth_engines::named(kind, config),
            shared: cache_shared(),
            registry: None,
        })
    }

    /// The engine will use this run's registry client (engines with [`RegistryAccess::Berth`]), and warn about
    /// registry options it cannot apply (the others).
    pub fn sharing(mut self, registries: &Registries) -> Self {
        self.shared = cache_shared().with(registries.client.clone());
        self.registry = Some(registries.options().clone());
        self
    }

    /// The other engines reachable here that hold `reference` (for "built on another engine" hints); engines
    /// that do not answer are left out quietly.
    pub async fn others_with(&self, reference: &str) -> Vec<EngineKind> {
        let mut found = Vec::new();
        for kind in berth_engines::providers().filter(|k| *k != self.kind) {
            if let Ok(engine) = berth_engines::connect(kind, &self.config, cache_shared()).await {
                if engine.has_image(reference).await.unwrap_or(false) {
                    found.push(kind);
                }
            }
        }
        found
    }

    /// Says which engine and why on standard error, connects, and warns about registry options the engine
    /// cannot apply.
    pub async fn connect(&self) -> Result<Box<dyn ContainerEngine>> {
        crate::progress::output().say(&format!("engine: {} ({})", self.kind, self.source));
        let engine = berth_engines::connect(self.kind, &self.config, self.shared.clone())
            .await
            .map_err(|e| berth_engines::blame_named(self.kind, self.named.as_ref(), e))?;
        remove_leftovers(engine.as_ref()).await;
        if let Some(options) = self.registry.as_ref().filter(|o| asks_registry_access(o)) {
            // only asked when a flag could be lost: Docker's capabilities cost a request
            if let Ok(capabilities) = engine.capabilities().await {
                let progress = crate::progress::output().image(engine.name());
                for text in registry_warnings(engine.name(), &capabilities, options) {
                    progress.event(ProgressEvent::Warning(text));
                }
            }
        }
        Ok(engine)
    }
}

/// What every engine of this run shares to begin with: berth's cache folder, where an engine may remember slow
/// facts between runs (Podman's service facts).
fn cache_shared() -> Shared {
    match super::cache_dir() {
        Some(dir) => Shared::default().with(berth_core::provider::CacheDir(dir)),
        None => Shared::default(),
    }
}

/// Removes what killed berth processes left in `engine` and says so in one line; an engine that fails to
/// warns, and one that cannot tell is left as it is (`berth doctor` says so).
async fn remove_leftovers(engine: &dyn ContainerEngine) {
    match engine.remove_leftovers().await {
        Ok(removed) => {
            if let Some(line) = removed_line(engine.name(), &removed) {
                crate::progress::output().say(&line);
            }
        }
        // an engine that cannot tell says so in `berth doctor`, not before every build
        Err(e) if e.kind() == berth_core::ErrorKind::Unsupported => {}
        Err(e) => crate::progress::output()
            .image(engine.name())
            .event(ProgressEvent::Warning(format!(
                "could not remove what a killed berth left in {}: {e}",
                engine.name()
            ))),
    }
}

/// The one line saying what was removed: `removed what a killed berth left in podman: A; B`.
fn removed_line(engine: &str, removed: &[berth_core::engine::Leftover]) -> Option<String> {
    (!removed.is_empty()).then(|| {
        let what: Vec<&str> = removed.iter().map(|l| l.what.as_str()).collect();
        format!(
            "removed what a killed berth left in {engine}: {}",
            what.join("; ")
        )
    })
}

/// Whether `options` hold anything an engine might not apply: `--ca-file` or `--insecure-registry`.
fn asks_registry_access(options: &RegistryOptions) -> bool {
    options.ca_file.is_some() || !options.insecure.is_empty()
}

/// What of `options` cannot reach `engine`, which reaches registries as `capabilities` say, and what to do.
fn registry_warnings(
    engine: &str,
    capabilities: &Capabilities,
    options: &RegistryOptions,
) -> Vec<String> {
    let RegistryAccess::Daemon {
        ca_place,
        insecure_place,
    } = capabilities.registries
    else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    if let Some(path) = &options.ca_file {
        warnings.push(format!(
            "--ca-file {} does not reach {engine}, whose daemon pulls and pushes with its own certificates \
             (it applies to berth's own registry checks only); for the daemon, copy it to {ca_place} \
             (HOST: the registry's host[:port])",
            path.display()
        ));
    }
    let named = options
        .insecure
        .iter()
        .filter(|host| !berth_registry::is_loopback(host));
    for (host, place) in named.filter_map(|host| Some((host, insecure_place?))) {
        warnings.push(format!(
            "--insecure-registry {host} does not reach {engine}, whose daemon allows plain HTTP only to the \
             registries its own configuration names; add {host} to {place} and restart it"
        ));
    }
    warnings
}

#[async_trait::async_trait]
impl OpenEngine for EngineChoice {
    async fn open(&self) -> Result<Arc<dyn ContainerEngine>> {
        Ok(Arc::from(self.connect().await?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(ca: bool, insecure: &[&str]) -> RegistryOptions {
        RegistryOptions {
            ca_file: ca.then(|| "/certs/ca.pem".into()),
            insecure: insecure.iter().map(|h| h.to_string()).collect(),
            ..RegistryOptions::default()
        }
    }

    fn daemon(insecure_per_request: bool) -> Capabilities {
        Capabilities {
            registries: RegistryAccess::Daemon {
                ca_place: "/etc/docker/certs.d/HOST/ca.crt",
                insecure_place: (!insecure_per_request).then_some("daemon.json"),
            },
            ..Capabilities::default()
        }
    }

    #[test]
    fn engines_on_berths_client_get_no_warning() {
        let berth = Capabilities::default();
        assert!(registry_warnings("containerd", &berth, &options(true, &["r:5000"])).is_empty());
    }

    #[test]
    fn a_daemon_is_warned_about_flags_it_cannot_apply() {
        let warnings = registry_warnings(
            "docker",
            &daemon(false),
            &options(true, &["r:5000", "127.0.0.1:5000"]),
        );
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].starts_with("--ca-file /certs/ca.pem does not reach docker"),
            "{warnings:?}"
        );
        assert!(
            warnings[0].contains("/etc/docker/certs.d/HOST/ca.crt"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].starts_with("--insecure-registry r:5000 does not reach docker"),
            "{warnings:?}"
        );
        // Podman takes tlsVerify=false per request: only the CA file is lost.
        let podman = registry_warnings("podman", &daemon(true), &options(true, &["r:5000"]));
        assert_eq!(podman.len(), 1, "{podman:?}");
        assert!(
            registry_warnings("podman", &daemon(true), &options(false, &["r:5000"])).is_empty()
        );
    }
}
