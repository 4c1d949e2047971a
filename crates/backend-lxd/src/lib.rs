//! berth's LXD backend: [`LxdEngine`] implements berth-core's [`ContainerEngine`] on a host running LXD, with
//! berth's own step-by-step builder and image store (LXD keeps system-container images, not OCI images).
//!
//! It talks to LXD's REST API on the local unix socket (`LXD_DIR/unix.socket`, else the Debian package's
//! `/var/lib/lxd/unix.socket`, else the snap's `/var/snap/lxd/common/lxd/unix.socket`), or to a remote server that
//! `lxc remote add` set up, over HTTPS with lxc's client certificate and the server certificate lxc accepted
//! ([`remote`]), never through `lxc`.
//!
//! - **Images** live in an OCI image layout under berth's state folder ([`store`]): `pull` fills it through
//!   [`berth_registry::RegistryClient`], `build` adds to it, `push` sends from it (blobs the registry has are
//!   skipped, blobs of another repository are mounted, four go up at a time, the manifest goes last); `inspect`,
//!   `tag` and `remove` read and edit its `index.json`.
//! - **Build** ([`build`]): the base image is pulled into the store and imported once into LXD as an image
//!   (alias `berth-base-<manifest digest>`). Each build runs in one container made from it, named
//!   `berth-<pid>-<n>`: RUN steps through the exec API, COPY files through the file API; after each RUN step
//!   berth compares the container's root folder (on a remote server: an export of it) with what it was before
//!   the step and writes the differences as a layer (deletions as whiteouts). The result is the base's layers plus one layer per RUN and COPY step.
//! - **Step cache**: berth's own, keyed on the parent layer chain and the step, holding the layers of earlier
//!   builds; a build whose steps are all cached makes no container at all.
//! - **Pruning** ([`LxdEngine::prune`]): each build first removes step-cache entries, pulled bases and imported LXD images
//!   unused for [`MAX_UNUSED`], and blobs nothing reaches; never while another build runs.
//! - **Cleanup**: the container, its devices and the build's temporary files go when the build ends, fails or
//!   is dropped; containers left by a killed berth (whose pid is gone) are removed by the next build.
//!
//! Containers are unprivileged (a user namespace: root in the container is an unprivileged id on the host; LXD
//! shifts the root folder's owners into the container's id range when it first starts, and berth writes layers
//! with the owners the container sees) and share the LXD server's network namespace, the host's (`raw.lxc:
//! lxc.namespace.share.net`): RUN steps reach what the host reaches, as with berth's containerd builder. A user
//! namespace may not mount the sysfs of a network namespace it does not own, so such a container gets `/proc`
//! and no `/sys` (`lxc.mount.auto = proc:rw`).
//!
//! On a remote server nothing is read from or written to the server's folders: each step's changes come from an
//! instance export through the API, compared and written by the same code as a local root folder's
//! (`build::export`), the init program and the files of secret, context and helper-image mounts are pushed
//! through the file API, and cache mounts are custom storage volumes locked on the server (`build::pushed`).

pub mod doctor;
pub mod options;
mod provider;

mod api;
mod base;
mod build;
mod cleanup;
mod client;
mod errors;
mod images;
mod init;
mod instance;
mod prune;
mod pull;
mod push;
pub mod remote;
mod store;
mod websocket;

use std::path::PathBuf;

use async_trait::async_trait;
use berth_core::engine::{
    BuildOptions, BuiltImage, Capabilities, ContainerEngine, EngineInfo, ImageDetails, Progress,
    PushedImage, RemoveOptions, RunIsolation, TransferOptions,
};
use berth_core::plan::BuildPlan;
use berth_core::{Error, Operation, Result};
use http::Method;

pub use cleanup::wait_for_cleanups;
pub use instance::{Leftovers, NAME_PREFIX};
pub use options::{EnvVars, LxdOptions};
pub use provider::{LxdProvider, PROVIDER};
pub use prune::{Pruned, MAX_UNUSED};

use api::Lxd;
use client::Client;
use store::Store;

/// The engine name in errors and [`EngineInfo`].
pub(crate) const ENGINE: &str = "lxd";

/// An LXD server berth builds on.
#[derive(Debug)]
pub struct LxdEngine {
    lxd: Lxd,
    lxd_dir: PathBuf,
    state_dir: PathBuf,
    options: LxdOptions,
    version: String,
    /// The server's pid: containers join its network namespace.
    server_pid: u64,
    /// The server's architecture as its kernel names it (`x86_64`, `aarch64`): the build container's init
    /// program and the architecture of the LXD images berth imports.
    architecture: String,
}

impl LxdEngine {
    /// Connects to the server named by `options` (or the environment) and asks what it is, so an unreachable,
    /// untrusting or uninitialised server is reported here.
    pub async fn connect(options: LxdOptions) -> Result<LxdEngine> {
        let lxd_dir = options.lxd_dir();
        let client = match options.remote()? {
            None => Client::Unix(options::socket_in(&lxd_dir)),
            Some(remote) => Client::remote(remote.clone()).map_err(|e| {
                errors::error(
                    berth_core::ErrorKind::InvalidSpec,
                    Operation::Connect,
                    format!("LXD remote {}: lxc's certificates: {e}", remote.name),
                )
                .with_hint(format!(
                    "add the remote again as this user: `lxc remote add {} {}`",
                    remote.name,
                    remote.url()
                ))
            })?,
        };
        let lxd = Lxd::new(client);
        let server = lxd
            .call(Operation::Connect, Method::GET, "/1.0", None)
            .await?;
        if server["auth"] != "trusted" {
            return Err(untrusted(lxd.client()));
        }
        let environment = &server["environment"];
        Ok(LxdEngine {
            version: environment["server_version"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            server_pid: environment["server_pid"].as_u64().unwrap_or(0),
            architecture: environment["kernel_architecture"]
                .as_str()
                .unwrap_or(std::env::consts::ARCH)
                .to_string(),
            state_dir: options.state_dir(),
            lxd,
            lxd_dir,
            options,
        })
    }

    /// The server as it appears in messages: its socket, or its address and lxc remote.
    pub fn endpoint_name(&self) -> String {
        self.lxd.client().name()
    }

    /// The lxc remote this engine builds on, `None` for the local server.
    pub fn remote(&self) -> Option<&remote::Remote> {
        self.lxd.client().remote_server()
    }

    /// `failed` (a build whose RUN step says a disk is full) as an out-of-space error naming the storage pool
    /// the build container's root disk is on: the configured pool, else the default profile's.
    async fn out_of_space(&self, failed: berth_core::Error) -> berth_core::Error {
        let op = Operation::Build;
        let pool = match self.options.pool() {
            Some(pool) => Some(pool),
            None => self
                .lxd
                .call(op, Method::GET, "/1.0/profiles/default", None)
                .await
                .ok()
                .and_then(|profile| doctor::root_pool(&profile)),
        };
        let Some(pool) = pool else {
            return failed.out_of_space(
                "the LXD storage pool of the build container",
                "make room in that pool, or name a larger one with engine.lxd.pool (BERTH_LXD_POOL)",
            );
        };
        let source = self
            .lxd
            .call(op, Method::GET, &format!("/1.0/storage-pools/{pool}"), None)
            .await
            .ok()
            .and_then(|p| p["config"]["source"].as_str().map(str::to_string));
        let place = match source {
            Some(source) => format!("the LXD storage pool {pool} (source {source})"),
            None => format!("the LXD storage pool {pool}"),
        };
        let hint = format!(
            "make room in pool {pool} (`lxc storage info {pool}`: remove instances and images you do not \
             need), or build on a larger pool: engine.lxd.pool in berth.yaml or BERTH_LXD_POOL; nothing of \
             the failed build was kept"
        );
        failed.out_of_space(place, hint)
    }

    /// berth's state folder for this server.
    pub fn state_dir(&self) -> &std::path::Path {
        &self.state_dir
    }

    /// The containers, and build folders, berth's builds hold on this server: what builds in progress use, and
    /// what a failed, cancelled or killed build must not leave once the next build has cleaned up.
    pub async fn leftovers(&self) -> Result<Leftovers> {
        instance::leftovers(self).await
    }

    /// Removes what berth's LXD state holds and nothing used for longer than `max_unused` (each build does this
    /// with [`MAX_UNUSED`]): step-cache entries, bases builds pulled, blobs no name or cache entry reaches, the
    /// LXD images this state folder imported and unpacked helper images. Images named in the store stay. While a
    /// build runs nothing is removed ([`Pruned::ran`] is `false`).
    pub async fn prune(&self, max_unused: std::time::Duration) -> Result<Pruned> {
        prune::prune(self, max_unused).await
    }

    pub(crate) fn store(&self, op: Operation) -> Result<Store> {
        Store::open(self.state_dir.join("oci"), op)
    }

    /// The registry client for one transfer: the front end's shared client when it fits, else one with
    /// `credentials` first and the registries `insecure` names allowed plain HTTP.
    pub(crate) fn registry_client(
        &self,
        credentials: impl Iterator<Item = berth_core::engine::Credentials>,
        insecure: &[String],
    ) -> Result<berth_registry::RegistryClient> {
        berth_registry::RegistryClient::for_transfer(
            self.options.client.as_ref(),
            &self.options.registry,
            credentials,
            insecure,
        )
        .map_err(|e: Error| e.with_engine(ENGINE))
    }

    fn transfer_client(
        &self,
        options: &TransferOptions,
        reference: &str,
    ) -> Result<berth_registry::RegistryClient> {
        let insecure = berth_registry::RegistryOptions::transfer_insecure(options, reference);
        self.registry_client(options.credentials.iter().cloned(), &insecure)
    }
}

/// The error for a server that answers but does not trust this client.
fn untrusted(client: &Client) -> Error {
    let op = Operation::Connect;
    let kind = berth_core::ErrorKind::Unauthorized;
    match client.remote_server() {
        None => errors::error(
            kind,
            op,
            format!("LXD on {} does not trust this client", client.name()),
        )
        .with_hint("run berth as root or as a member of the `lxd` group"),
        Some(remote) => errors::error(
            kind,
            op,
            format!(
                "LXD at {} does not trust this client's certificate ({})",
                client.name(),
                remote.client_cert().display()
            ),
        )
        .with_hint(errors::untrusted_client_hint(remote)),
    }
}

#[async_trait]
impl ContainerEngine for LxdEngine {
    fn name(&self) -> &'static str {
        ENGINE
    }

    async fn info(&self) -> Result<EngineInfo> {
        Ok(EngineInfo {
            engine: ENGINE.to_string(),
            version: self.version.clone(),
            endpoint: self.endpoint_name(),
            capabilities: Capabilities {
                run_mounts: true,
                cache_mounts: true,
                caches_persist: true,
                secret_mounts: true,
                cross_platform: false,
                rootless: false,
                // an unprivileged LXD container: LXD's seccomp policy, its capability set (which keeps
                // CAP_SYS_ADMIN, in the container's user namespace), the host's network namespace
                run_isolation: RunIsolation {
                    seccomp: true,
                    reduced_capabilities: false,
                    user_namespace: true,
                    host_network_by_default: true,
                },
                registries: berth_core::engine::RegistryAccess::Berth,
            },
        })
    }

    async fn build(
        &self,
        plan: &BuildPlan,
        options: &BuildOptions,
        progress: &dyn Progress,
    ) -> Result<BuiltImage> {
        match build::build(self, plan, options, progress).await {
            // berth's own state folder full is named by its I/O error already
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
        let registry = self.transfer_client(options, reference)?;
        push::push(
            &self.store(Operation::Push)?,
            &registry,
            reference,
            progress,
        )
        .await
    }

    async fn pull(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<()> {
        let registry = self.transfer_client(options, reference)?;
        let store = self.store(Operation::Pull)?;
        let _in_use = prune::in_use(&self.state_dir).await?;
        pull::pull(&store, &registry, reference, Operation::Pull, progress).await?;
        // pulled by the user: no prune removes it as a base builds pulled
        prune::Bases::new(&self.state_dir).forget(&pull::image_name(reference, Operation::Pull)?);
        Ok(())
    }

    async fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        images::inspect(&self.store(Operation::Inspect)?, reference)
    }

    async fn tag(&self, source: &str, target: &str) -> Result<()> {
        images::tag(&self.store(Operation::Tag)?, source, target)
    }

    async fn remove(&self, reference: &str, options: RemoveOptions) -> Result<()> {
        images::remove(&self.store(Operation::Remove)?, reference, options)
    }

    /// Containers and build folders named for a berth process that no longer runs (`berth-<pid>-<n>`).
    async fn leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        instance::dead_leftovers(self).await
    }

    async fn remove_leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        instance::remove_dead(self).await
    }
}
