//! Reaching registries and engines from command-line options: one registry client per run (berth-workflow's
//! [`Registries`]), the engine chosen and announced, and opened for a workflow run when it first builds.

use std::sync::Arc;

use berth_core::engine::{ContainerEngine, ContainerEngineExt};
use berth_core::Result;
use berth_workflow::OpenEngine;
pub use berth_workflow::Registries;

use crate::args::{EngineArgs, RegistryArgs};
use crate::config::{Config, EngineSettings, Setting};
use crate::engine_choice::{self, ChoiceSource, EngineKind};

/// Registry access for one run, from the command line's `--insecure-registry` and `--ca-file`.
pub fn registries(args: &RegistryArgs) -> Result<Registries> {
    Registries::new(args.insecure_registries.clone(), args.ca_file.clone())
}

/// The engine the user asked for (validated before any other work), connected only when needed.
pub struct EngineChoice {
    kind: EngineKind,
    source: ChoiceSource,
    settings: EngineSettings,
    /// The setting that names the engine's address, if one does (its errors name it).
    named: Option<Setting>,
}

impl EngineChoice {
    /// Chooses the engine as the user asked: an unknown name is an error right away.
    pub fn new(args: &EngineArgs) -> Result<Self> {
        EngineChoice::with_config(args, &Config::load()?)
    }

    /// [`EngineChoice::new`] with this run's files already read.
    pub fn with_config(args: &EngineArgs, config: &Config) -> Result<Self> {
        let (kind, source) = engine_choice::choose_with(args.engine.as_deref(), config)?;
        crate::engines::check_supported(kind)
            .map_err(|e| e.context(format!("engine {kind} ({source})")))?;
        Ok(EngineChoice {
            kind,
            source,
            settings: config.connection(),
            named: config.endpoint(kind),
        })
    }

    /// The other engines reachable here that hold `reference` (for "built on another engine" hints); engines
    /// that do not answer are left out quietly.
    pub async fn others_with(&self, reference: &str) -> Vec<EngineKind> {
        let mut found = Vec::new();
        for kind in crate::doctor::engines::ALL
            .into_iter()
            .filter(|k| *k != self.kind)
        {
            if let Ok(engine) = crate::engines::connect_with(kind, &self.settings).await {
                if engine.has_image(reference).await.unwrap_or(false) {
                    found.push(kind);
                }
            }
        }
        found
    }

    /// Says which engine and why on standard error, and connects.
    pub async fn connect(&self) -> Result<Box<dyn ContainerEngine>> {
        crate::progress::output().say(&format!("engine: {} ({})", self.kind, self.source));
        crate::engines::connect_with(self.kind, &self.settings)
            .await
            .map_err(|e| engine_choice::blame_named(self.kind, self.named.as_ref(), e))
    }
}

#[async_trait::async_trait]
impl OpenEngine for EngineChoice {
    async fn open(&self) -> Result<Arc<dyn ContainerEngine>> {
        Ok(Arc::from(self.connect().await?))
    }
}
