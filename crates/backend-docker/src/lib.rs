//! berth's Docker backend: [`DockerEngine`] implements berth-core's [`ContainerEngine`] on dockerd.
//!
//! It finds the daemon the way the docker CLI does (`DOCKER_HOST`, `DOCKER_TLS_VERIFY`, `DOCKER_CERT_PATH`,
//! else the Docker context of `DOCKER_CONTEXT` or `config.json`, else `/var/run/docker.sock`) and talks to it through bollard. Builds use BuildKit when the daemon has it,
//! with a BuildKit session of berth's own that serves registry credentials and build secrets, so cache mounts,
//! secret mounts and authenticated base images all work on one path; otherwise the classic builder, which
//! refuses plans that mount anything into RUN steps. BuildKit reads the context through the session's file sync
//! ([`DockerOptions::context_by_file_sync`]: only the files it does not have from the last build); the classic
//! builder gets a tar generated while it is sent. Either way the context's size does not matter for memory. Every failure is a berth [`Error`] whose kind is decided in one
//! function ([`errors`]'s `classify`).

mod buildkit;
mod classic;
mod connect;
mod context;
mod dial;
pub mod doctor;
pub mod endpoint;
mod errors;
mod export;
mod filesync;
mod images;
mod progress;
mod provider;
mod remote;
mod session;
mod stall;
mod syncfilter;
mod transfer;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;
use berth_core::engine::{
    BuildOptions, BuiltImage, ContainerEngine, EngineInfo, ImageDetails, Progress, PushedImage,
    RemoveOptions, TransferOptions,
};
use berth_core::plan::BuildPlan;
use berth_core::{Error, Result};
use bollard::Docker;

pub use buildkit::CONTEXT_TRANSFER;
pub use context::{DOCKER_CONFIG, DOCKER_CONTEXT};
pub use endpoint::TlsFiles;

pub use provider::PROVIDER;

/// The engine name in errors and [`EngineInfo`].
pub(crate) const ENGINE: &str = "docker";

/// Which builder [`ContainerEngine::build`] uses.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Builder {
    /// BuildKit when the daemon offers it, else the classic builder.
    #[default]
    Auto,
    /// BuildKit; building fails with [`berth_core::ErrorKind::Unsupported`] on a daemon without it.
    BuildKit,
    /// The classic builder (`DOCKER_BUILDKIT=0`); plans with `RUN --mount` are refused.
    Classic,
}

/// How to reach the daemon and how to build on it.
#[derive(Debug, Clone)]
pub struct DockerOptions {
    /// Daemon address (`unix:///path`, `tcp://host:port`, `ssh://user@host`); `None` reads `DOCKER_HOST`, then
    /// the Docker context (see [`DockerOptions::context`]), then falls back to `/var/run/docker.sock`.
    pub host: Option<String>,
    /// Client certificates for a `tcp://` daemon; `None` reads `DOCKER_TLS_VERIFY` and `DOCKER_CERT_PATH`.
    pub tls: Option<TlsFiles>,
    /// The Docker context to use when no host is named (`docker context ls`); `None` reads `DOCKER_CONTEXT`,
    /// then `currentContext` in the docker CLI's `config.json`.
    pub context: Option<String>,
    /// How long the daemon may take to answer its first request (`/_ping`) before it counts as unavailable.
    pub ping_timeout: Duration,
    /// How long opening a connection of berth's own (the BuildKit session and build request), TLS handshake
    /// included, may take.
    pub connect_timeout: Duration,
    /// How long a progress stream (push, pull, classic build output) may go without a message: a daemon that
    /// stalls mid-stream fails the operation instead of hanging it. A RUN step may be silent for a long time.
    pub idle_timeout: Duration,
    /// Limit for a BuildKit build to report nothing while it only pulls `FROM` images: dockerd's own registry
    /// client waits for ever on a registry that stops sending, so past this berth cancels the build with an
    /// error naming the pull (see `stall`). As berth's own registry client's idle limit.
    pub pull_idle_timeout: Duration,
    /// Which builder to use.
    pub builder: Builder,
    /// BuildKit builds serve the context through the session's file sync (`FileSync/DiffCopy`, as the docker CLI
    /// does: BuildKit keeps the files of the last build and fetches only new and changed ones); `false` sends it
    /// as a tar in the request body, which BuildKit stores and extracts on every build. On by default.
    pub context_by_file_sync: bool,
}

impl Default for DockerOptions {
    fn default() -> Self {
        DockerOptions {
            host: None,
            tls: None,
            context: None,
            ping_timeout: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30 * 60),
            pull_idle_timeout: Duration::from_secs(5 * 60),
            builder: Builder::Auto,
            context_by_file_sync: true,
        }
    }
}

/// The builder a build would use, as decided by [`DockerEngine::builder`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectedBuilder {
    /// BuildKit with berth's session.
    BuildKit,
    /// The classic builder.
    Classic,
}

/// A Docker daemon berth builds on.
pub struct DockerEngine {
    client: Docker,
    endpoint: endpoint::Endpoint,
    /// The Docker context that named the endpoint, for messages.
    context: Option<String>,
    options: DockerOptions,
    daemon: tokio::sync::OnceCell<connect::Daemon>,
}

impl std::fmt::Debug for DockerEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DockerEngine")
            .field("endpoint", &self.endpoint.display())
            .field("builder", &self.options.builder)
            .finish()
    }
}

impl DockerEngine {
    /// The daemon's address as it appears in messages.
    pub fn endpoint_name(&self) -> String {
        match &self.context {
            Some(context) => format!("{} ({context})", self.endpoint.display()),
            None => self.endpoint.display(),
        }
    }

    /// `failed` (a build, pull or push whose text says a disk is full) as an out-of-space error naming the
    /// daemon's storage: a RUN step's writes, BuildKit's cache, pulled and committed layers and an exported
    /// image all land in `DockerRootDir`.
    async fn out_of_space(&self, failed: Error) -> Error {
        let root = match self.daemon().await {
            Ok(daemon) => daemon.root_dir.clone(),
            Err(_) => String::new(),
        };
        out_of_space_in(&root, failed)
    }

    /// Which builder [`ContainerEngine::build`] uses on this daemon with these options.
    pub async fn builder(&self) -> Result<SelectedBuilder> {
        let daemon = self.daemon().await?;
        match self.options.builder {
            Builder::Classic => Ok(SelectedBuilder::Classic),
            Builder::Auto if daemon.buildkit => Ok(SelectedBuilder::BuildKit),
            Builder::Auto => Ok(SelectedBuilder::Classic),
            Builder::BuildKit if daemon.buildkit => Ok(SelectedBuilder::BuildKit),
            Builder::BuildKit => Err(Error::unsupported(
                ENGINE,
                "build",
                format!(
                    "the daemon at {} (API {}, {}) has no BuildKit",
                    self.endpoint_name(),
                    daemon.api_version,
                    daemon.os
                ),
            )
            .with_hint(
                "use a Linux dockerd 18.09 or newer, or let berth pick the classic builder",
            )),
        }
    }

    /// The client for long operations (builds, transfers): bollard's timeout covers the wait for response
    /// headers, which for a build comes only after the whole context was sent.
    fn long_client(&self) -> Docker {
        self.client
            .clone()
            .with_timeout(Duration::from_secs(24 * 3600))
    }

    /// The next message of a daemon's progress stream, failing when none came for
    /// [`DockerOptions::idle_timeout`] (the long client's own timeout is a day).
    async fn next_within<S>(&self, stream: &mut S, op: errors::Op) -> Result<Option<S::Item>>
    where
        S: futures_util::Stream + Unpin,
    {
        use futures_util::StreamExt as _;
        let idle = self.options.idle_timeout;
        tokio::time::timeout(idle, stream.next())
            .await
            .map_err(|_| {
                let silent = std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the daemon sent nothing for {} s", idle.as_secs_f32()),
                );
                errors::io_error(silent, op, &self.endpoint_name())
            })
    }
}

#[async_trait]
impl ContainerEngine for DockerEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    async fn info(&self) -> Result<EngineInfo> {
        let daemon = self.daemon().await?;
        let buildkit = self.builder().await.ok() == Some(SelectedBuilder::BuildKit);
        Ok(EngineInfo {
            engine: ENGINE.to_string(),
            version: daemon.version.clone(),
            endpoint: self.endpoint_name(),
            capabilities: berth_core::engine::Capabilities {
                run_mounts: buildkit,
                cache_mounts: buildkit,
                caches_persist: buildkit,
                secret_mounts: buildkit,
                cross_platform: false,
                rootless: daemon.rootless,
                // dockerd's defaults for build containers: its seccomp profile and capability set, the bridge
                // network; a user namespace only when dockerd itself is rootless
                run_isolation: berth_core::engine::RunIsolation {
                    seccomp: true,
                    reduced_capabilities: true,
                    user_namespace: daemon.rootless,
                    host_network_by_default: false,
                },
                // dockerd pulls and pushes itself: its certs.d and daemon.json decide TLS, not berth's flags
                registries: berth_core::engine::RegistryAccess::Daemon {
                    ca_place: "/etc/docker/certs.d/HOST/ca.crt",
                    insecure_place: Some("`insecure-registries` in /etc/docker/daemon.json"),
                },
            },
        })
    }

    async fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuiltImage> {
        let built = match self.builder().await? {
            SelectedBuilder::BuildKit => buildkit::build(self, plan, options, progress).await,
            SelectedBuilder::Classic if plan.uses_mounts() => {
                let hint = if self.daemon().await?.podman {
                    "this address serves Podman's Docker-compatible API: use berth's Podman engine for it"
                } else {
                    "use a daemon with BuildKit (Linux dockerd 18.09+) and leave the builder on auto"
                };
                Err(Error::unsupported(
                    ENGINE,
                    "build",
                    "the classic builder cannot mount caches, secrets or files into RUN steps",
                )
                .with_hint(hint))
            }
            SelectedBuilder::Classic => classic::build(self, plan, options, progress).await,
        };
        match built {
            Err(e) if e.is_unplaced_no_space() => Err(self.out_of_space(e).await),
            built => built,
        }
    }

    async fn push(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<PushedImage> {
        self.daemon().await?;
        match transfer::push(self, reference, options, progress).await {
            // berth's push exports the image through the daemon, which spools it under its data root
            Err(e) if e.is_unplaced_no_space() => Err(self.out_of_space(e).await),
            pushed => pushed,
        }
    }

    async fn image_store(&self) -> Result<berth_core::engine::ImageStore> {
        let unsupported = |why: &str| Err(Error::unsupported(ENGINE, "read storage", why));
        if !matches!(self.endpoint, endpoint::Endpoint::Unix(_)) {
            return unsupported("the daemon is reached over the network");
        }
        let daemon = self.daemon().await?;
        if daemon.podman {
            return unsupported("the socket is Podman's Docker-compatible API");
        }
        if daemon.rootless || daemon.root_dir.is_empty() {
            return unsupported("the daemon is rootless or names no root folder");
        }
        Ok(berth_core::engine::ImageStore::Docker {
            root: daemon.root_dir.clone().into(),
            driver: daemon.driver.clone(),
        })
    }

    async fn export(&self, reference: &str) -> Result<berth_core::engine::ExportStream> {
        let root = self.daemon().await?.root_dir.clone();
        export::export(self, reference, root).await
    }

    async fn pull(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<()> {
        self.daemon().await?;
        match transfer::pull(self, reference, options, progress).await {
            Err(e) if e.is_unplaced_no_space() => Err(self.out_of_space(e).await),
            pulled => pulled,
        }
    }

    async fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        self.daemon().await?;
        self.inspect_image(reference).await
    }

    async fn tag(&self, source: &str, target: &str) -> Result<()> {
        self.daemon().await?;
        self.tag_image(source, target).await
    }

    async fn remove(&self, reference: &str, options: RemoveOptions) -> Result<()> {
        self.daemon().await?;
        self.remove_image(reference, options).await
    }

    /// None, by dockerd's own doing: a killed berth's connection closes with it, and dockerd cancels the build
    /// of a closed connection (BuildKit's session ends, the running step is killed, nothing is committed).
    /// tests/e2e/interrupted kills berth with SIGKILL mid-step and finds nothing left; that is measured with
    /// BuildKit, not with the classic builder (a dockerd without BuildKit).
    async fn leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        Ok(Vec::new())
    }

    async fn remove_leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        Ok(Vec::new())
    }
}

/// `failed` as an out-of-space error naming Docker's storage at `root` (`DockerRootDir`; empty when the daemon
/// did not say).
pub(crate) fn out_of_space_in(root: &str, failed: Error) -> Error {
    let root = if root.is_empty() {
        "/var/lib/docker"
    } else {
        root
    };
    let hint = format!(
        "make room on the file system of {root}: remove images and build cache you do not need \
         (`docker image prune`, `docker builder prune`), or give the daemon a larger `--data-root` \
         (`data-root` in /etc/docker/daemon.json); nothing of the failed work was kept"
    );
    failed.out_of_space(format!("Docker's storage (DockerRootDir {root})"), hint)
}

/// Every secret a step mounts, by id, with its file checked to exist ([`BuildPlan::secret_files`]).
pub(crate) fn check_secrets(plan: &BuildPlan) -> Result<HashMap<String, PathBuf>> {
    let files = plan.secret_files().map_err(|e| {
        e.with_engine(ENGINE)
            .with_operation(berth_core::Operation::Build)
    })?;
    Ok(files.into_iter().collect())
}

/// The names a daemon or BuildKit may look a registry's credentials up by.
pub(crate) fn registry_hosts(registry: &str) -> Vec<String> {
    berth_core::reference::credential_names(registry)
}
