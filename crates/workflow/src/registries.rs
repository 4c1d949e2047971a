//! Registry access for one run: one registry client (connection pool, token cache) and the credentials it finds
//! as Docker and Podman users keep them, resolved once per registry through that client, for the existence
//! checks and for the engine's pulls and pushes alike.

use std::path::PathBuf;

use berth_core::engine::{Credentials, TransferOptions};
use berth_core::reference::ImageRef;
use berth_core::Result;
use berth_registry::{CredentialResolver, RegistryClient, RegistryOptions};

/// Registry access for one run.
pub struct Registries {
    /// The shared client (connection pool, token cache, credentials by registry).
    pub client: RegistryClient,
    resolver: CredentialResolver,
    options: RegistryOptions,
    /// Who pushes images built on Docker or Podman.
    pub push_via: crate::PushVia,
    /// Where berth's own pushes record which blob each layer made and which repositories hold it (a folder in
    /// the user's cache), so a later push skips or mounts instead of compressing again; `None` keeps no record.
    pub pushed_record: Option<PathBuf>,
}

impl Registries {
    /// Registry access with credentials from the environment and the user's files: `insecure` registries may be
    /// reached over plain HTTP or unverified TLS (loopback ones always may), `ca_file` adds a CA to trust.
    pub fn new(insecure: Vec<String>, ca_file: Option<PathBuf>) -> Result<Self> {
        Registries::with_resolver(insecure, ca_file, CredentialResolver::from_env())
    }

    /// [`Registries::new`] with credentials found by `resolver`.
    pub fn with_resolver(
        insecure: Vec<String>,
        ca_file: Option<PathBuf>,
        resolver: CredentialResolver,
    ) -> Result<Self> {
        let options = RegistryOptions {
            insecure,
            ca_file,
            credentials: resolver.clone(),
            ..RegistryOptions::default()
        };
        let client = RegistryClient::new(options.clone())?;
        Ok(Registries {
            client,
            resolver,
            options,
            push_via: crate::PushVia::default(),
            pushed_record: None,
        })
    }

    /// The options the client was made with (`--insecure-registry`, `--ca-file`), for engines that reach
    /// registries themselves.
    pub fn options(&self) -> &RegistryOptions {
        &self.options
    }

    /// Where this run finds credentials (`berth doctor` asks it where they come from).
    pub fn resolver(&self) -> &CredentialResolver {
        &self.resolver
    }

    /// Credentials for `host`, if the user has any: looked up once per run (see
    /// [`RegistryClient::credentials_for`]).
    pub async fn credentials(&self, host: &str) -> Result<Option<Credentials>> {
        Ok(self
            .client
            .credentials_for(host)
            .await?
            .map(|r| r.credentials))
    }

    /// Whether `registry` may be reached over plain HTTP or unverified TLS (loopback, or `--insecure-registry`).
    pub fn is_insecure(&self, registry: &str) -> bool {
        self.options.is_insecure(registry)
    }

    /// What to do when `host` refuses the credentials this run would use there (the fix depends on where
    /// they come from: see [`berth_registry::login_hint`]).
    pub async fn login_hint(&self, host: &str) -> String {
        // A config file that cannot be read fails the push before this; no origin is the honest fallback.
        let found = self.client.credentials_for(host).await.ok().flatten();
        berth_registry::login_hint(host, found.as_ref().map(|f| &f.origin))
    }

    /// What an engine needs to push to or pull from `image`'s registry.
    pub async fn transfer_options(&self, image: &ImageRef) -> Result<TransferOptions> {
        Ok(TransferOptions {
            credentials: self.credentials(&image.registry).await?,
            insecure: self.options.is_insecure(&image.registry),
        })
    }
}
