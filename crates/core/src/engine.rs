//! The `ContainerEngine` trait: what only a backend can do, and nothing more.
//!
//! Docker (bollard), Podman (libpod REST) and containerd (gRPC, with berth executing the plan itself) implement
//! it in their own crates. Options travel in structs so a new flag touches no backend signature. A backend
//! declares what it supports in [`Capabilities`]; a request it cannot honour is an [`ErrorKind::Unsupported`]
//! error, never a silent emulation. Conveniences built from these methods live in [`ContainerEngineExt`].

use std::fmt;

use async_trait::async_trait;

use crate::error::{Error, ErrorKind, Result};
use crate::plan::BuildPlan;

/// What an engine can do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Capabilities {
    /// `RUN --mount` of any kind (files from the context or another image); every plan made from a spec uses it.
    pub run_mounts: bool,
    /// `RUN --mount=type=cache` is accepted.
    pub cache_mounts: bool,
    /// What a cache mount holds is kept for the next build. `false` where the engine accepts cache mounts but
    /// cannot keep them for this user (rootless Podman whose buildah cache folder another user made): each build
    /// starts with empty caches, and the build says why in a [`ProgressEvent::Warning`].
    pub caches_persist: bool,
    /// `RUN --mount=type=secret` is supported.
    pub secret_mounts: bool,
    /// Builds for a platform other than the host's.
    pub cross_platform: bool,
    /// The engine runs without root privileges.
    pub rootless: bool,
    /// What separates a RUN step from the host.
    pub run_isolation: RunIsolation,
    /// Who reaches registries for pulls and pushes, and so which of berth's registry settings apply.
    pub registries: RegistryAccess,
}

/// Who reaches registries for an engine's pulls and pushes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum RegistryAccess {
    /// berth's own registry client (the one the front end shares): `--ca-file` and `--insecure-registry` apply.
    #[default]
    Berth,
    /// The engine's daemon, with its own TLS configuration: `--ca-file` cannot reach it, and berth warns.
    Daemon {
        /// Where the daemon reads a registry's CA certificate, `HOST` standing for the registry.
        ca_place: &'static str,
        /// Where the daemon's own configuration marks a registry insecure, when it does not honour
        /// [`TransferOptions::insecure`] per request (`None`: it does).
        insecure_place: Option<&'static str>,
    },
}

/// What separates a RUN step from the host as an engine runs it (the conformance suite checks each from inside a
/// step). No engine gives a RUN step a virtual machine's isolation: the step shares the host's kernel, so build
/// only specs (and base images) you would run on that host.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunIsolation {
    /// A seccomp filter refuses system calls a build has no use for (kernel keyrings, `bpf`, mounting, loading
    /// modules, ...). Which ones differs: Docker's filter and berth's containerd builder's refuse new user
    /// namespaces, buildah's allows them.
    pub seccomp: bool,
    /// The step runs without `CAP_SYS_ADMIN`: Docker's default capability set or a smaller one.
    pub reduced_capabilities: bool,
    /// The step's root is an unprivileged user on the host (a user namespace, as rootless engines run steps).
    pub user_namespace: bool,
    /// With [`Network::Default`] the step shares the host's network namespace: it reaches whatever the host
    /// reaches, including services listening on the host's loopback. [`Network::None`] always isolates it.
    pub host_network_by_default: bool,
}

/// What an engine says about itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineInfo {
    /// Engine name, e.g. `docker`.
    pub engine: String,
    /// Server version.
    pub version: String,
    /// Where berth reached it (socket path or URL).
    pub endpoint: String,
    /// What it supports.
    pub capabilities: Capabilities,
}

/// A secret value: printed as `***` everywhere, so it never reaches a log or an error message.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret value.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Credentials for one registry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Registry host (and port), e.g. `127.0.0.1:5000`.
    pub registry: String,
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Secret,
}

/// How RUN steps reach the network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Network {
    /// The engine's default.
    #[default]
    Default,
    /// The host's network (package mirrors reachable without a network namespace).
    Host,
    /// No network at all.
    None,
}

/// Options for [`ContainerEngine::build`].
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// References to tag the result with.
    pub tags: Vec<String>,
    /// Credentials for pulling base and helper images.
    pub credentials: Vec<Credentials>,
    /// Network for RUN steps.
    pub network: Network,
    /// Ignore the build cache.
    pub no_cache: bool,
    /// Registries (host and port, as in [`Credentials::registry`]) of the plan's base and helper images that may
    /// be pulled over plain HTTP or unverified TLS: loopback ones and those named insecure. Engines that pull
    /// themselves are told so for these hosts only, as pushes are.
    pub insecure_registries: Vec<String>,
}

/// Options for [`ContainerEngine::push`] and [`ContainerEngine::pull`].
#[derive(Debug, Clone, Default)]
pub struct TransferOptions {
    /// Credentials for the registry, if it needs any.
    pub credentials: Option<Credentials>,
    /// Allow plain HTTP / unverified TLS for this registry.
    pub insecure: bool,
}

/// Options for [`ContainerEngine::remove`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RemoveOptions {
    /// Remove even if containers use it or other tags point at it.
    pub force: bool,
}

/// A local image as its engine exports it: a tar in `docker save`'s layout (uncompressed layers, the config,
/// `manifest.json`), arriving while the engine writes it. See [`ContainerEngine::export`].
pub type ExportStream =
    std::pin::Pin<Box<dyn futures_util::Stream<Item = Result<bytes::Bytes>> + Send + 'static>>;

/// Where an engine on this machine keeps its images, for berth to read them there instead of exporting them
/// (see [`ContainerEngine::image_store`]). What is read is checked against the image's digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageStore {
    /// containers/storage (Podman): its graph root (`store.graphRoot`) and driver (`store.graphDriverName`).
    ContainersStorage {
        /// The graph root.
        root: std::path::PathBuf,
        /// The storage driver.
        driver: String,
    },
    /// dockerd's classic image store: its root (`DockerRootDir`) and storage driver.
    Docker {
        /// The root.
        root: std::path::PathBuf,
        /// The storage driver.
        driver: String,
    },
}

/// A built image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuiltImage {
    /// The engine's image id (`sha256:...`).
    pub id: String,
}

/// A pushed image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushedImage {
    /// The manifest digest the registry stored (`sha256:...`).
    pub digest: String,
}

/// What the engine knows about a local image.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ImageDetails {
    /// Image id.
    pub id: String,
    /// Tags pointing at it.
    pub tags: Vec<String>,
    /// Environment from the image config.
    pub env: Vec<String>,
    /// Entrypoint from the image config.
    pub entrypoint: Vec<String>,
    /// Working directory.
    pub workdir: String,
    /// User.
    pub user: String,
    /// Layer digests (uncompressed diff ids).
    pub layers: Vec<String>,
}

/// Something a berth process that is gone (killed with SIGKILL, crashed, its machine reset) left in an engine:
/// a build step still running, a build container, a lease. See [`ContainerEngine::leftovers`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leftover {
    /// What it is, for a person (`a RUN step still running (pid 123: ...)`, `LXD container berth-77-0`).
    pub what: String,
    /// How long ago it was made, when the engine tells.
    pub age: Option<std::time::Duration>,
    /// Whether the next build or push on the engine removes it; `false` for one berth cannot prove orphaned
    /// (its text then says what removes it).
    pub removed_by_next_run: bool,
}

/// Something that happened during a long operation, for progress display.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProgressEvent {
    /// A build step started: `index` of `total`, and what it does.
    Step {
        /// 1-based step number.
        index: usize,
        /// Number of steps.
        total: usize,
        /// The instruction.
        description: String,
    },
    /// A line of output from a step or a transfer.
    Line(String),
    /// Something the user should know even when output is quiet: the build goes on, but not as well as it could
    /// (and the text says how to fix that).
    Warning(String),
    /// Bytes transferred for a layer.
    Transfer {
        /// Layer or blob id.
        id: String,
        /// Bytes done.
        current: u64,
        /// Bytes in all, if known.
        total: Option<u64>,
    },
}

/// Receives progress from long operations.
pub trait Progress: Send + Sync {
    /// Called for each event, in order.
    fn event(&self, event: ProgressEvent);
}

/// Progress that goes nowhere.
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

/// A container engine berth can build on.
#[async_trait]
pub trait ContainerEngine: Send + Sync {
    /// The engine's name: `docker`, `podman` or `containerd`.
    fn name(&self) -> &'static str;
    /// Connects and reports version and capabilities; fails with [`ErrorKind::EngineUnavailable`] and a hint
    /// that says how to start the engine when it cannot be reached.
    async fn info(&self) -> Result<EngineInfo>;
    /// What the engine can build: [`ContainerEngine::info`]'s capabilities, which an engine may answer without
    /// gathering the rest (the Podman service takes up to half a second for its full report).
    async fn capabilities(&self) -> Result<Capabilities> {
        Ok(self.info().await?.capabilities)
    }
    /// Builds a plan and tags the result.
    async fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuiltImage>;
    /// Pushes a local image to its registry.
    async fn push(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<PushedImage>;
    /// Streams local image `reference` out of the engine in `docker save`'s layout, so berth can compress and
    /// push it itself (faster than engines that compress on one thread). Engines that keep layers compressed
    /// already push through berth's client and say [`ErrorKind::Unsupported`].
    async fn export(&self, reference: &str) -> Result<ExportStream> {
        let _ = reference;
        Err(Error::unsupported(
            self.name(),
            "export",
            "this engine does not export images",
        ))
    }
    /// Where the engine keeps images, when it runs on this machine and berth may read them there (a push then
    /// reads layers from the store, as skopeo's `containers-storage:` transport does, instead of waiting for
    /// an export). [`ErrorKind::Unsupported`] with the reason otherwise (a remote engine, another store).
    async fn image_store(&self) -> Result<ImageStore> {
        Err(Error::unsupported(
            self.name(),
            "read storage",
            "berth does not read this engine's storage",
        ))
    }
    /// Pulls an image from its registry.
    async fn pull(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<()>;
    /// Describes a local image; [`ErrorKind::NotFound`] if there is none.
    async fn inspect(&self, reference: &str) -> Result<ImageDetails>;
    /// Adds a tag to a local image.
    async fn tag(&self, source: &str, target: &str) -> Result<()>;
    /// Removes a local image reference.
    async fn remove(&self, reference: &str, options: RemoveOptions) -> Result<()>;
    /// What berth processes that are gone left in this engine (see [`Leftover`]). Never what a running berth
    /// uses: each backend says in its docs how it tells a leftover from a build in progress. No default: an
    /// engine that can be left nothing says why in its implementation.
    async fn leftovers(&self) -> Result<Vec<Leftover>>;
    /// Removes what [`ContainerEngine::leftovers`] finds; returns what it removed.
    async fn remove_leftovers(&self) -> Result<Vec<Leftover>>;
}

/// Conveniences built from [`ContainerEngine`]'s methods, for every engine.
#[async_trait]
pub trait ContainerEngineExt: ContainerEngine {
    /// Whether a local image exists (`inspect` without the NotFound error).
    async fn has_image(&self, reference: &str) -> Result<bool> {
        match self.inspect(reference).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Checks that the engine can build `plan`, naming the first feature it lacks.
    async fn check_plan(&self, plan: &BuildPlan) -> Result<()> {
        let caps = self.capabilities().await?;
        if plan.uses_secret_mounts() && !caps.secret_mounts {
            return Err(Error::unsupported(
                self.name(),
                "build",
                "this engine cannot mount build secrets",
            )
            .with_hint("remove pip_secret_mounts or use an engine with BuildKit or buildah"));
        }
        if plan.uses_mounts() && !caps.run_mounts {
            return Err(Error::unsupported(
                self.name(),
                "build",
                "this engine cannot mount files into RUN steps",
            )
            .with_hint("enable BuildKit (dockerd 18.09+ with BuildKit) or use another engine"));
        }
        if plan.uses_cache_mounts() && !caps.cache_mounts {
            return Err(Error::unsupported(
                self.name(),
                "build",
                "this engine cannot use cache mounts",
            )
            .with_hint(
                "enable BuildKit (DOCKER_BUILDKIT=1 / dockerd with buildkit) or use another engine",
            ));
        }
        Ok(())
    }
}

impl<T: ContainerEngine + ?Sized> ContainerEngineExt for T {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let creds = Credentials {
            registry: "r".into(),
            username: "u".into(),
            password: Secret::new("hunter2"),
        };
        assert!(!format!("{creds:?}").contains("hunter2"));
    }

    #[test]
    fn the_trait_is_object_safe() {
        fn takes(_: Option<&dyn ContainerEngine>) {}
        takes(None);
    }
}
