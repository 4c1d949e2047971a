//! Reaching registries and engines from command-line options: one registry client per run, credentials
//! resolved as Docker and Podman users keep them, the engine chosen and announced.

use berth_core::engine::{ContainerEngine, ContainerEngineExt, Credentials, TransferOptions};
use berth_core::reference::ImageRef;
use berth_core::Result;
use berth_registry::{CredentialResolver, RegistryClient, RegistryOptions};

use crate::args::{EngineArgs, PushVia, RegistryArgs};
use crate::config::{Config, EngineSettings, Setting};
use crate::engine_choice::{self, ChoiceSource, EngineKind};

/// Registry access for one run.
pub struct Registries {
    /// The shared client (connection pool, token cache).
    pub client: RegistryClient,
    resolver: CredentialResolver,
    options: RegistryOptions,
    /// Who pushes images built on Docker or Podman.
    pub push_via: PushVia,
}

impl Registries {
    /// Sets up registry access from the command line.
    pub fn new(args: &RegistryArgs) -> Result<Self> {
        let resolver = CredentialResolver::from_env();
        let options = RegistryOptions {
            insecure: args.insecure_registries.clone(),
            ca_file: args.ca_file.clone(),
            credentials: resolver.clone(),
            ..RegistryOptions::default()
        };
        let client = RegistryClient::new(options.clone())?;
        Ok(Registries {
            client,
            resolver,
            options,
            push_via: PushVia::default(),
        })
    }

    /// [`Registries::new`] for a command that pushes with an engine: `--push-via` counts too.
    pub fn for_engine(args: &EngineArgs) -> Result<Self> {
        Ok(Registries {
            push_via: args.push_via,
            ..Registries::new(&args.registry)?
        })
    }

    /// Where this run finds credentials (`berth doctor` asks it where they come from).
    pub fn resolver(&self) -> &CredentialResolver {
        &self.resolver
    }

    /// Credentials for `host`, if the user has any.
    pub fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        Ok(self.resolver.resolve(host)?.map(|r| r.credentials))
    }

    /// Whether `registry` may be reached over plain HTTP or unverified TLS (loopback, or `--insecure-registry`).
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.options.is_insecure(registry)
    }

    /// What to do when `host` refuses the credentials this run would use there (the fix depends on where
    /// they come from: see [`berth_registry::login_hint`]).
    pub fn login_hint(&self, host: &str) -> String {
        // A config file that cannot be read fails the push before this; no origin is the honest fallback.
        let found = self.resolver.resolve(host).ok().flatten();
        berth_registry::login_hint(host, found.as_ref().map(|f| &f.origin))
    }

    /// What an engine needs to push to or pull from `image`'s registry.
    pub fn transfer_options(&self, image: &ImageRef) -> Result<TransferOptions> {
        Ok(TransferOptions {
            credentials: self.credentials(&image.registry)?,
            insecure: self.options.is_insecure(&image.registry),
        })
    }
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
