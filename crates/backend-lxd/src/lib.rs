//! berth's LXD backend: [`LxdEngine`] implements berth-core's [`ContainerEngine`] on a host running LXD, with
//! berth's own step-by-step builder and image store (LXD keeps system-container images, not OCI images).
//!
//! It talks to LXD's REST API on the local unix socket (`LXD_DIR/unix.socket`, else the Debian package's
//! `/var/lib/lxd/unix.socket`, else the snap's `/var/snap/lxd/common/lxd/unix.socket`), never through `lxc`.
//!
//! - **Images** live in an OCI image layout under berth's state folder ([`store`]): `pull` fills it through
//!   [`berth_registry::RegistryClient`], `build` adds to it, `push` sends from it (blobs the registry has are
//!   skipped, blobs of another repository are mounted, the manifest goes last); `inspect`, `tag` and `remove`
//!   read and edit its `index.json`.
//! - **Build** ([`build`]): the base image is pulled into the store and imported once into LXD as an image
//!   (alias `berth-base-<manifest digest>`). Each build runs in one container made from it, named
//!   `berth-<pid>-<n>`: RUN steps through the exec API, COPY files through the file API; after each RUN step
//!   berth compares the container's root folder with what it was before the step and writes the differences
//!   as a layer (deletions as whiteouts). The result is the base's layers plus one layer per RUN and COPY step.
//! - **Step cache**: berth's own, keyed on the parent layer chain and the step, holding the layers of earlier
//!   builds; a build whose steps are all cached makes no container at all.
//! - **Cleanup**: the container, its devices and the build's temporary files go when the build ends, fails or
//!   is dropped; containers left by a killed berth (whose pid is gone) are removed by the next build.
//!
//! Containers run privileged (LXD's `security.privileged`: no user namespace, so the root folder holds the ids
//! the container sees and a layer needs no unshifting) and share the LXD server's network namespace, the host's
//! (`raw.lxc: lxc.namespace.share.net`): RUN steps reach what the host reaches, as with berth's containerd
//! builder. Builds need the server's root folders on this machine: remote LXD servers are not supported yet.

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
mod pull;
mod push;
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

use api::Lxd;
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
}

impl LxdEngine {
    /// Connects to the server named by `options` (or the environment) and asks what it is, so an unreachable,
    /// untrusting or uninitialised server is reported here.
    pub async fn connect(options: LxdOptions) -> Result<LxdEngine> {
        let lxd_dir = options.lxd_dir();
        let lxd = Lxd::new(options::socket_in(&lxd_dir));
        let server = lxd
            .call(Operation::Connect, Method::GET, "/1.0", None)
            .await?;
        if server["auth"] != "trusted" {
            return Err(errors::error(
                berth_core::ErrorKind::Unauthorized,
                Operation::Connect,
                format!(
                    "LXD on {} does not trust this client",
                    lxd.socket().display()
                ),
            )
            .with_hint("run berth as root or as a member of the `lxd` group"));
        }
        let environment = &server["environment"];
        Ok(LxdEngine {
            version: environment["server_version"]
                .as_str()
                .unwrap_or("unknown")
                .to_string(),
            server_pid: environment["server_pid"].as_u64().unwrap_or(0),
            state_dir: options.state_dir(),
            lxd,
            lxd_dir,
            options,
        })
    }

    /// The socket as it appears in messages.
    pub fn endpoint_name(&self) -> String {
        format!("unix://{}", self.lxd.socket().display())
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
                // a privileged LXD container: LXD's seccomp policy, its capability set (which keeps
                // CAP_SYS_ADMIN), no user namespace, the host's network namespace
                run_isolation: RunIsolation {
                    seccomp: true,
                    reduced_capabilities: false,
                    user_namespace: false,
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
        build::build(self, plan, options, progress).await
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
        pull::pull(&store, &registry, reference, Operation::Pull, progress)
            .await
            .map(drop)
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
}
