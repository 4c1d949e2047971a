//! berth's Podman backend: [`PodmanEngine`] implements berth-core's [`ContainerEngine`] on Podman's API service.
//!
//! It talks to the libpod REST API (`/v4.0.0/libpod/...`) on the service's unix socket with a small hyper
//! client of its own, found the way podman's remote client finds it (`CONTAINER_HOST`, else the user's
//! `$XDG_RUNTIME_DIR/podman/podman.sock`, else `/run/podman/podman.sock` for root). Rootful and rootless
//! services work alike; [`Capabilities::rootless`] says which one answered. Builds go to buildah through
//! `POST /libpod/build`: the context tar is generated while it is sent (its size does not matter for memory),
//! build secrets travel inside it (libpod moves them out of the context before building), and registry
//! credentials for base and helper images go in `X-Registry-Config`, so `RUN --mount` of every kind and
//! authenticated bases all work. Every failure is a berth [`Error`] whose kind is decided in one function
//! ([`errors`]'s `classify`).
//!
//! Podman versions: tested against Podman 4.3.1 (Debian 12), rootful and rootless. Podman 5 was not available
//! here. What the backend reads is kept to fields whose names and types are the same in Podman 5's API types
//! (checked against its source): `/libpod/info` `version.Version`, `host.security.rootless`, `store.graphRoot` and
//! `store.imageCopyTmpDir`; image inspect
//! `Id`, `RepoTags`, `Config.{Env,Entrypoint,WorkingDir,User}`, `RootFS.Layers`; the build, pull and push
//! streams' `stream`, `error`, `aux.ID`, `id`, `status` and `progressDetail`. Everything is read from untyped
//! JSON, so a field that is absent or changes type degrades to an empty value instead of failing the request;
//! requests use the `/v4.0.0` prefix, which Podman 5 still serves. Cache mounts are rendered `sharing=shared`
//! with a lock each step takes itself, and ids per user (see [`cache`] and
//! [`berth_core::render::CacheMounts::SharedWithLock`]), which also avoids the `sharing=locked` parse errors
//! reported on some Podman 5 builds.
//!
//! [`Capabilities::rootless`]: berth_core::engine::Capabilities::rootless

mod build;
pub mod cache;
mod client;
mod connect;
pub mod connections;
pub mod doctor;
pub mod endpoint;
mod errors;
mod export;
mod facts;
mod images;
mod leftovers;
mod provider;
mod service_process;
mod space;
mod stall;
pub mod steps;
mod transfer;

use std::time::Duration;

use async_trait::async_trait;
use berth_core::engine::{
    BuildOptions, BuiltImage, Capabilities, ContainerEngine, Credentials, EngineInfo, ImageDetails,
    Progress, PushedImage, RemoveOptions, TransferOptions,
};
use berth_core::plan::BuildPlan;
use berth_core::{Error, Result};

pub use provider::PROVIDER;

/// The engine name in errors and [`EngineInfo`].
pub(crate) const ENGINE: &str = "podman";

/// How to reach the Podman service.
#[derive(Debug, Clone)]
pub struct PodmanOptions {
    /// The service's socket (`unix:///path`, a path, or `ssh://user@host[:port]/path` on another host); `None`
    /// reads `CONTAINER_HOST`, then a recorded connection (`connection`), then falls back to the user's or root's
    /// default socket.
    pub socket: Option<String>,
    /// The private key for an `ssh://` socket; `None` reads `CONTAINER_SSHKEY`, then leaves it to ssh's own
    /// configuration and agent.
    pub ssh_key: Option<String>,
    /// A connection `podman system connection add` recorded, used when neither `socket` nor `CONTAINER_HOST`
    /// names the service; `None` reads `CONTAINER_CONNECTION`, then takes the default connection, if any
    /// ([`connections`]).
    pub connection: Option<String>,
    /// How long the service may take to answer its first request (`/_ping`) before it counts as unavailable.
    pub ping_timeout: Duration,
    /// Limit for a request that answers at once (inspect, tag, remove, info), answer read included.
    pub request_timeout: Duration,
    /// Limit for a streamed answer (build output, push progress) to go without a byte: a service that stalls
    /// mid-stream fails the build or push instead of hanging it.
    pub idle_timeout: Duration,
    /// Limit for a build's output to go silent while the service pulls a `FROM` image: the service's own
    /// registry client waits for ever on a registry that stops sending, so past this berth gives the build up
    /// with an error naming the pull (see `stall`). As berth's own registry client's idle limit.
    pub pull_idle_timeout: Duration,
    /// Where to remember the service's facts between runs, per service process (asking them costs Podman a quarter of a
    /// second); `None` asks once per engine. berth's CLI gives `podman-services` in its cache folder.
    pub facts_dir: Option<std::path::PathBuf>,
}

impl Default for PodmanOptions {
    fn default() -> Self {
        PodmanOptions {
            socket: None,
            ssh_key: None,
            connection: None,
            ping_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(120),
            // a RUN step may print nothing for a long time (a compile, a download): generous
            idle_timeout: Duration::from_secs(30 * 60),
            pull_idle_timeout: Duration::from_secs(5 * 60),
            facts_dir: None,
        }
    }
}

/// A Podman API service berth builds on.
#[derive(Debug)]
pub struct PodmanEngine {
    client: client::Client,
    options: PodmanOptions,
    reachable: tokio::sync::OnceCell<()>,
    service: tokio::sync::OnceCell<connect::Service>,
    caches: std::sync::OnceLock<(berth_core::render::CacheMounts, Option<String>)>,
}

impl PodmanEngine {
    /// The service's address as it appears in messages.
    pub fn endpoint_name(&self) -> String {
        self.client.address.display()
    }

    fn socket(&self) -> &endpoint::Address {
        &self.client.address
    }

    /// Options that reach this same service again, when it listens on this host (`None` over SSH).
    pub(crate) fn local_options(&self) -> Option<PodmanOptions> {
        match self.socket() {
            endpoint::Address::Unix(path) => Some(PodmanOptions {
                socket: Some(path.display().to_string()),
                ..self.options.clone()
            }),
            endpoint::Address::Ssh { .. } => None,
        }
    }

    /// How cache mounts are rendered for this service, and the warning when they cannot be kept (see [`cache`]):
    /// decided once per engine, since a rootless service's answer reads `/proc`.
    pub(crate) fn cache_choice(&self) -> &(berth_core::render::CacheMounts, Option<String>) {
        self.caches.get_or_init(|| match self.socket() {
            endpoint::Address::Unix(socket) => cache::cache_mounts(self.service_uid(), socket),
            endpoint::Address::Ssh { .. } => cache::remote_cache_mounts(self.service_uid()),
        })
    }

    /// Whether buildah can keep this service user's cache folders.
    fn caches_persist(&self) -> bool {
        self.cache_choice().0 != berth_core::render::CacheMounts::Tmpfs
    }
}

#[async_trait]
impl ContainerEngine for PodmanEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    async fn info(&self) -> Result<EngineInfo> {
        let service = self.service().await?;
        Ok(EngineInfo {
            engine: ENGINE.to_string(),
            version: service.version.clone(),
            endpoint: self.endpoint_name(),
            capabilities: features(service.rootless, self.caches_persist()),
        })
    }

    async fn capabilities(&self) -> Result<Capabilities> {
        self.reachable().await?;
        Ok(features(self.runs_rootless(), self.caches_persist()))
    }

    async fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuiltImage> {
        self.reachable().await?;
        match build::build(self, plan, options, progress).await {
            Err(e) => Err(self.name_full_disk(e).await),
            built => built,
        }
    }

    async fn push(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<PushedImage> {
        self.reachable().await?;
        match transfer::push(self, reference, options, progress).await {
            // the service copies each layer into its temporary folder before sending it
            Err(e) => Err(self.name_full_disk(e).await),
            pushed => pushed,
        }
    }

    async fn export(&self, reference: &str) -> Result<berth_core::engine::ExportStream> {
        match export::export(self, reference).await {
            // the service writes the whole archive to its temporary folder before sending it
            Err(e) => Err(self.name_full_disk(e).await),
            exported => exported,
        }
    }

    async fn image_store(&self) -> Result<berth_core::engine::ImageStore> {
        let endpoint::Address::Unix(_) = self.socket() else {
            return Err(Error::unsupported(
                ENGINE,
                "read storage",
                "the service runs on another machine",
            ));
        };
        let service = self.service().await?;
        if service.graph_root.is_empty() {
            return Err(Error::unsupported(
                ENGINE,
                "read storage",
                "the service names no graph root",
            ));
        }
        Ok(berth_core::engine::ImageStore::ContainersStorage {
            root: service.graph_root.clone().into(),
            driver: service.graph_driver.clone(),
        })
    }

    async fn pull(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.reachable().await?;
        match transfer::pull(self, reference, options, progress).await {
            Err(e) => Err(self.name_full_disk(e).await),
            pulled => pulled,
        }
    }

    async fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        self.reachable().await?;
        match self.inspect_image(reference).await {
            // Podman 4.3 crashes on inspect when its temporary folder is full
            Err(e) => Err(self.name_full_disk(e).await),
            inspected => inspected,
        }
    }

    async fn tag(&self, source: &str, target: &str) -> Result<()> {
        self.reachable().await?;
        self.tag_image(source, target).await
    }

    async fn remove(&self, reference: &str, options: RemoveOptions) -> Result<()> {
        self.reachable().await?;
        self.remove_image(reference, options).await
    }

    /// RUN steps still running and buildah working containers whose build carries the mark of a berth process
    /// that is gone ([`steps`], `leftovers`); found where berth can see them (a service on this host).
    async fn leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        leftovers::leftovers(self).await
    }

    async fn remove_leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        leftovers::remove_leftovers(self).await
    }
}

/// What buildah behind the service builds: every RUN --mount berth renders, for the host's platform.
fn features(rootless: bool, caches_persist: bool) -> Capabilities {
    Capabilities {
        run_mounts: true,
        cache_mounts: true,
        caches_persist,
        secret_mounts: true,
        cross_platform: false,
        rootless,
        // buildah's defaults: containers/common's seccomp profile (which, unlike Docker's, lets a step create user
        // namespaces) and containers.conf's capability set; libpod 4.3 runs RUN in the host's network namespace
        // unless berth asks for none (measured by the conformance suite's isolation behaviour)
        run_isolation: berth_core::engine::RunIsolation {
            seccomp: true,
            reduced_capabilities: true,
            user_namespace: rootless,
            host_network_by_default: true,
        },
        // the service pulls and pushes itself (tlsVerify=false per request for insecure registries)
        registries: berth_core::engine::RegistryAccess::Daemon {
            ca_place: "/etc/containers/certs.d/HOST/ca.crt",
            insecure_place: None,
        },
    }
}

/// The names containers/image may look a registry's credentials up by.
pub(crate) fn registry_hosts(registry: &str) -> Vec<String> {
    berth_core::reference::credential_names(registry)
}

/// The `{"username", "password"}` object libpod's auth headers carry.
pub(crate) fn auth_json(credentials: &Credentials) -> serde_json::Value {
    serde_json::json!({
        "username": credentials.username,
        "password": credentials.password.expose(),
        "serveraddress": credentials.registry,
    })
}

/// A libpod auth header value: JSON in URL-safe base64, as libpod decodes it.
pub(crate) fn auth_header(value: &serde_json::Value) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE.encode(value.to_string())
}

/// An invalid-spec error of this engine.
pub(crate) fn invalid(op: errors::Op, message: impl Into<String>) -> Error {
    Error::invalid(message)
        .with_engine(ENGINE)
        .with_operation(op)
}
