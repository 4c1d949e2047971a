//! berth's containerd backend: [`ContainerdEngine`] implements berth-core's [`ContainerEngine`] with a native
//! builder on a containerd-only server, no BuildKit needed.
//!
//! It talks gRPC to containerd's socket (`CONTAINERD_ADDRESS`, default `/run/containerd/containerd.sock`) in one
//! namespace (`CONTAINERD_NAMESPACE`, default `default`, so `ctr` and `nerdctl` users see the images), using only
//! the services containerd 1.6 has: content, images, leases, snapshots, diff, containers and tasks (transfer is
//! `Unimplemented` on 1.6, so pulls and pushes are done client-side through berth's own registry client).
//!
//! - **Pull** ([`pull`]): manifests and blobs come through [`berth_registry::RegistryClient`] into the content
//!   store under a lease, with the garbage-collection labels containerd's own pull sets; layers are unpacked into
//!   the snapshotter by chain id, and the image record is created.
//! - **Build** ([`build`]): the plan is executed step by step. A RUN step is a container and task (runc shim,
//!   an OCI runtime spec berth writes, host networking, the host's resolv.conf and hosts) on an active snapshot of
//!   the previous step; its output is streamed through FIFOs; berth writes the overlay snapshot's upper folder
//!   as its layer (the diff service, which compares whole trees, only for other snapshotters). A COPY step is a layer berth writes itself (sorted, fixed times and owners: reproducible digests).
//!   Config steps edit the image config; every step gets a history entry. A step cache keyed on the parent, the
//!   step and the files it reads lets a rebuild re-run only from the first changed step.
//! - **Push** ([`push`]): blobs the registry has are skipped, blobs of another repository of the same registry
//!   are mounted, the rest uploaded from the content store, four at a time; the config and the manifest go last.
//! - **Cleanup** ([`cleanup`]): tasks, containers, active snapshots and leases a build creates are removed when
//!   it fails or its future is dropped.
//!
//! Every failure is a berth [`Error`] whose kind comes from one function ([`errors`]'s `classify`).

mod build;
mod cleanup;
mod convert;
mod errors;
mod folders;
mod images;
mod labels;
mod leftovers;
mod options;
mod owner;
mod provider;
mod pull;
mod push;
mod rootfs;
mod step_cache_max;

use async_trait::async_trait;
use berth_core::engine::{
    BuildOptions, BuiltImage, Capabilities, ContainerEngine, EngineInfo, ImageDetails, Progress,
    PushedImage, RemoveOptions, RunIsolation, TransferOptions,
};
use berth_core::plan::BuildPlan;
use berth_core::{Error, Result};

pub use cleanup::wait_for_cleanups;
pub use options::{validate_namespace, ContainerdOptions, EnvVars, DEFAULT_ADDRESS};
pub use provider::PROVIDER;
pub use step_cache_max::StepCacheMax;

use convert::Daemon;
use errors::Op;

/// The engine name in errors and [`EngineInfo`].
pub(crate) const ENGINE: &str = "containerd";

/// Prefix of every id berth gives a lease, container or active snapshot, so leftovers are easy to find.
pub const ID_PREFIX: &str = "berth-";

/// A containerd daemon berth builds on.
#[derive(Debug)]
pub struct ContainerdEngine {
    daemon: Daemon,
    options: options::Resolved,
    version: String,
}

/// What a build, failed or interrupted, may leave behind: the ids berth created that still exist.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Tasks (by container id).
    pub tasks: Vec<String>,
    /// Containers.
    pub containers: Vec<String>,
    /// Active snapshots and views.
    pub snapshots: Vec<String>,
    /// Leases.
    pub leases: Vec<String>,
    /// Ingests: blobs being written into the content store (by ref).
    pub ingests: Vec<String>,
    /// Build folders in berth's state folder (`BERTH_CONTAINERD_STATE_DIR`; those of the layout before build
    /// folders were named for their process are left out: no build makes them any more).
    pub folders: Vec<std::path::PathBuf>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.tasks.is_empty()
            && self.containers.is_empty()
            && self.snapshots.is_empty()
            && self.leases.is_empty()
            && self.ingests.is_empty()
            && self.folders.is_empty()
    }
}

impl ContainerdEngine {
    /// Connects to the daemon named by `options` (or the environment) and asks its version, so an unreachable
    /// daemon or an invalid namespace is reported here.
    pub async fn connect(options: ContainerdOptions) -> Result<ContainerdEngine> {
        let options = options.resolve()?;
        let daemon = Daemon::connect(
            &options.address,
            &options.namespace,
            &options.snapshotter,
            options.connect_timeout,
        )
        .await?
        .with_timeouts(options.timeouts);
        let version = tokio::time::timeout(options.connect_timeout, daemon.version())
            .await
            .map_err(|_| {
                errors::connect_error(&options.address, "the version request got no answer")
            })??;
        Ok(ContainerdEngine {
            daemon,
            options,
            version,
        })
    }

    /// `failed` (a build or pull whose RUN step or daemon says a disk is full) as an out-of-space error naming
    /// containerd's storage: a step's writes land in the snapshotter's root, pulled blobs in the content
    /// store, both under containerd's `root`.
    async fn out_of_space(&self, failed: berth_core::Error) -> berth_core::Error {
        let place = match self.daemon.snapshotter_root().await {
            Ok(Some(root)) => format!(
                "containerd's root ({} snapshotter at {root})",
                self.daemon.snapshotter
            ),
            _ => format!(
                "containerd's root (its {} snapshotter)",
                self.daemon.snapshotter
            ),
        };
        let hint = "make room on the file system of containerd's `root` (/etc/containerd/config.toml): remove \
                    images and snapshots you do not need (`ctr images rm`, then containerd's garbage \
                    collection), or move `root` to a larger file system; nothing of the failed work was kept";
        failed.out_of_space(place, hint)
    }

    /// The daemon's address as it appears in messages.
    pub fn endpoint_name(&self) -> String {
        format!("unix://{}", self.options.address.display())
    }

    /// The namespace images are built in.
    pub fn namespace(&self) -> &str {
        &self.options.namespace
    }

    /// The tasks, containers, active snapshots, leases and ingests with berth's [`ID_PREFIX`] in this namespace,
    /// and the build folders in its state folder: what builds in progress hold, and what a failed or cancelled
    /// build must not leave.
    pub async fn leftovers(&self) -> Result<Leftovers> {
        let d = &self.daemon;
        let mut snapshots = Vec::new();
        for name in d.snapshot_names(ID_PREFIX, Op::Inspect).await? {
            snapshots.push(name);
        }
        Ok(Leftovers {
            tasks: d.task_ids(ID_PREFIX, Op::Inspect).await?,
            containers: d.container_ids(ID_PREFIX, Op::Inspect).await?,
            snapshots,
            leases: d.lease_ids(ID_PREFIX, Op::Inspect).await?,
            ingests: d
                .ingests(ID_PREFIX, Op::Inspect)
                .await?
                .into_iter()
                .map(|i| i.id)
                .collect(),
            folders: folders::build_folders(&self.options.state_dir)
                .into_iter()
                .map(|f| f.path)
                .collect(),
        })
    }
}

#[async_trait]
impl ContainerEngine for ContainerdEngine {
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
                // the runtime spec berth writes (build/spec.rs): its seccomp filter and Docker's capability set,
                // no user namespace, no network namespace unless the plan asks for none
                run_isolation: RunIsolation {
                    seccomp: true,
                    reduced_capabilities: true,
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
        push::push(self, reference, options, progress).await
    }

    async fn pull(
        &self,
        reference: &str,
        options: &TransferOptions,
        progress: &dyn Progress,
    ) -> Result<()> {
        let registry = self.registry_client(
            options.credentials.iter().cloned(),
            &insecure_host(options, reference),
        )?;
        match pull::pull_image(self, &registry, reference, Op::Pull, progress).await {
            Ok(_) => Ok(()),
            // a blob half-written into the content store is never committed: the next pull resumes it
            Err(e) if e.is_unplaced_no_space() => Err(self.out_of_space(e).await),
            Err(e) => Err(e),
        }
    }

    async fn inspect(&self, reference: &str) -> Result<ImageDetails> {
        images::inspect(self, reference).await
    }

    async fn tag(&self, source: &str, target: &str) -> Result<()> {
        images::tag(self, source, target).await
    }

    async fn remove(&self, reference: &str, options: RemoveOptions) -> Result<()> {
        images::remove(self, reference, options).await
    }

    /// Told by the owner labels on berth's containers and leases and the names of its ingests and build folders
    /// (see the `leftovers` module): those of berth processes that are gone, and those whose owner is unknown
    /// (listed, never removed).
    async fn leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        leftovers::leftovers(self).await
    }

    /// Removes the tasks, containers, ingests, leases and build folders of berth processes that are gone; never a
    /// running berth's, nor those whose owner is unknown.
    async fn remove_leftovers(&self) -> Result<Vec<berth_core::engine::Leftover>> {
        leftovers::remove_leftovers(self).await
    }
}

impl ContainerdEngine {
    /// The registry client for one pull, push or build: the shared one when the engine was given it and it
    /// already allows every registry in `insecure` plain HTTP, else a new client with `credentials` first and
    /// those registries allowed (made from the shared client's options when there is one, so `--ca-file` holds).
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
}

/// `reference`'s registry, when a transfer may use plain HTTP with it.
pub(crate) fn insecure_host(options: &TransferOptions, reference: &str) -> Vec<String> {
    berth_registry::RegistryOptions::transfer_insecure(options, reference)
}
