//! The storage side of a build: snapshots, the diff service and leases.

use std::collections::HashMap;

use berth_core::Result;
use containerd_client::services::v1::diff_client::DiffClient;
use containerd_client::services::v1::leases_client::LeasesClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, Kind, ListSnapshotsRequest, MountsRequest, PrepareSnapshotRequest,
    RemoveSnapshotRequest, StatSnapshotRequest, UsageRequest, ViewSnapshotRequest,
};
use containerd_client::services::v1::{
    AddResourceRequest, ApplyRequest, CreateRequest, DeleteRequest, DiffRequest, ListRequest,
    ListResourcesRequest, Resource,
};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Code;
use futures_util::StreamExt as _;

use super::{
    missing, mounts_in, mounts_out, Daemon, Descriptor, MountSpec, SnapshotInfo, SnapshotKind,
};
use crate::errors::{status_error, Op};

impl Daemon {
    fn snapshots(&self) -> SnapshotsClient<Channel> {
        SnapshotsClient::new(self.channel.clone())
    }

    /// Prepares active snapshot `key` on `parent` (empty for none) and returns its mounts.
    pub(crate) async fn prepare(&self, key: &str, parent: &str, op: Op) -> Result<Vec<MountSpec>> {
        let request = self.request(PrepareSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels: HashMap::new(),
        });
        let response = self
            .snapshots()
            .prepare(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(mounts_in(response.into_inner().mounts))
    }

    /// A read-only view `key` of committed snapshot `parent`.
    pub(crate) async fn view(&self, key: &str, parent: &str, op: Op) -> Result<Vec<MountSpec>> {
        let request = self.request(ViewSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
            parent: parent.to_string(),
            labels: HashMap::new(),
        });
        let response = self
            .snapshots()
            .view(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(mounts_in(response.into_inner().mounts))
    }

    /// The mounts of snapshot `key`.
    pub(crate) async fn mounts(&self, key: &str, op: Op) -> Result<Vec<MountSpec>> {
        let request = self.call(MountsRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        });
        let response = self
            .snapshots()
            .mounts(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(mounts_in(response.into_inner().mounts))
    }

    /// Commits active snapshot `key` as `name`; `false` when a snapshot of that name exists already (the
    /// active one is left for the caller to remove).
    pub(crate) async fn commit(
        &self,
        name: &str,
        key: &str,
        labels: HashMap<String, String>,
        op: Op,
    ) -> Result<bool> {
        let request = self.request(CommitSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            name: name.to_string(),
            key: key.to_string(),
            labels,
        });
        match self.snapshots().commit(request).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::AlreadyExists => Ok(false),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Removes snapshot `key`; missing is fine.
    pub(crate) async fn remove_snapshot(&self, key: &str, op: Op) -> Result<()> {
        let request = self.request(RemoveSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        });
        match self.snapshots().remove(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// What the snapshotter knows about `key`, or `None`.
    pub(crate) async fn stat_snapshot(&self, key: &str, op: Op) -> Result<Option<SnapshotInfo>> {
        let request = self.call(StatSnapshotRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        });
        match self.snapshots().stat(request).await {
            Ok(response) => {
                let info = response
                    .into_inner()
                    .info
                    .ok_or_else(|| missing("snapshot info", op))?;
                let kind = match Kind::try_from(info.kind) {
                    Ok(Kind::View) => SnapshotKind::View,
                    Ok(Kind::Active) => SnapshotKind::Active,
                    Ok(Kind::Committed) => SnapshotKind::Committed,
                    _ => SnapshotKind::Unknown,
                };
                Ok(Some(SnapshotInfo { kind }))
            }
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// The bytes snapshot `key` holds on disk (its own files, not its parents'), or `None` when it is gone. For
    /// a committed snapshot containerd answers from its metadata (the overlay and native snapshotters measure a
    /// snapshot once, when it is committed); an active one is measured on each call.
    pub(crate) async fn snapshot_usage(&self, key: &str, op: Op) -> Result<Option<u64>> {
        let request = self.call(UsageRequest {
            snapshotter: self.snapshotter.clone(),
            key: key.to_string(),
        });
        match self.snapshots().usage(request).await {
            Ok(response) => Ok(Some(response.into_inner().size.max(0) as u64)),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Names of the snapshots whose name starts with `prefix` (for checks that a build left nothing behind).
    pub(crate) async fn snapshot_names(&self, prefix: &str, op: Op) -> Result<Vec<String>> {
        let request = self.call(ListSnapshotsRequest {
            snapshotter: self.snapshotter.clone(),
            filters: Vec::new(),
        });
        let mut stream = self
            .snapshots()
            .list(request)
            .await
            .map_err(|s| status_error(&s, op))?
            .into_inner();
        let mut names = Vec::new();
        while let Some(page) = stream.next().await {
            let page = page.map_err(|s| status_error(&s, op))?;
            names.extend(
                page.info
                    .into_iter()
                    .map(|i| i.name)
                    .filter(|n| n.starts_with(prefix)),
            );
        }
        Ok(names)
    }

    /// Applies layer `diff` (in the content store) onto the snapshot mounted by `mounts`; returns the
    /// uncompressed descriptor containerd applied.
    pub(crate) async fn apply(
        &self,
        diff: &Descriptor,
        mounts: &[MountSpec],
        op: Op,
    ) -> Result<Descriptor> {
        let request = self.request(ApplyRequest {
            diff: Some(diff.into()),
            mounts: mounts_out(mounts),
            payloads: HashMap::new(),
            sync_fs: false,
        });
        let response = DiffClient::new(self.channel.clone())
            .apply(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        response
            .into_inner()
            .applied
            .map(Descriptor::from)
            .ok_or_else(|| missing("the applied descriptor", op))
    }

    /// Writes the changes from `lower` to `upper` as a layer of `media_type` into the content store, with
    /// `labels`; returns its descriptor (its `containerd.io/uncompressed` label holds the diff id).
    pub(crate) async fn diff(
        &self,
        lower: &[MountSpec],
        upper: &[MountSpec],
        media_type: &str,
        labels: HashMap<String, String>,
        op: Op,
    ) -> Result<Descriptor> {
        let request = self.request(DiffRequest {
            left: mounts_out(lower),
            right: mounts_out(upper),
            media_type: media_type.to_string(),
            r#ref: String::new(),
            labels,
            source_date_epoch: None,
        });
        let response = DiffClient::new(self.channel.clone())
            .diff(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        response
            .into_inner()
            .diff
            .map(Descriptor::from)
            .ok_or_else(|| missing("the diff descriptor", op))
    }

    fn leases(&self) -> LeasesClient<Channel> {
        LeasesClient::new(self.channel.clone())
    }

    /// Creates lease `id`, which containerd's garbage collector removes by itself after `expire` (RFC 3339)
    /// if berth dies before deleting it.
    pub(crate) async fn create_lease(&self, id: &str, expire: &str, op: Op) -> Result<()> {
        let mut labels = super::runtime::owned(HashMap::new());
        labels.insert(crate::labels::GC_EXPIRE.to_string(), expire.to_string());
        let request = self.call(CreateRequest {
            id: id.to_string(),
            labels,
        });
        self.leases()
            .create(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(())
    }

    /// Deletes lease `id`; what only it referenced becomes garbage.
    pub(crate) async fn delete_lease(&self, id: &str, op: Op) -> Result<()> {
        self.delete_lease_sync(id, false, op).await
    }

    /// Deletes lease `id`; with `sync`, containerd collects what only it referenced before answering.
    pub(crate) async fn delete_lease_sync(&self, id: &str, sync: bool, op: Op) -> Result<()> {
        let request = self.call(DeleteRequest {
            id: id.to_string(),
            sync,
        });
        match self.leases().delete(request).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Adds blob `digest` to lease `id`, so the collector keeps it while the lease lives.
    pub(crate) async fn lease_content(&self, id: &str, digest: &str, op: Op) -> Result<()> {
        let request = self.call(AddResourceRequest {
            id: id.to_string(),
            resource: Some(Resource {
                id: digest.to_string(),
                r#type: "content".to_string(),
            }),
        });
        self.leases()
            .add_resource(request)
            .await
            .map_err(|s| status_error(&s, op))?;
        Ok(())
    }

    /// The blobs lease `id` holds (none when the lease is gone).
    pub(crate) async fn leased_content(&self, id: &str, op: Op) -> Result<Vec<String>> {
        let request = self.call(ListResourcesRequest { id: id.to_string() });
        match self.leases().list_resources(request).await {
            Ok(response) => Ok(response
                .into_inner()
                .resources
                .into_iter()
                .filter(|r| r.r#type == "content")
                .map(|r| r.id)
                .collect()),
            Err(s) if s.code() == Code::NotFound => Ok(Vec::new()),
            Err(s) => Err(status_error(&s, op)),
        }
    }

    /// Ids of the leases whose id starts with `prefix`.
    pub(crate) async fn lease_ids(&self, prefix: &str, op: Op) -> Result<Vec<String>> {
        Ok(self
            .leases_labeled(prefix, op)
            .await?
            .into_iter()
            .map(|o| o.id)
            .collect())
    }

    /// The leases whose id starts with `prefix`: id, labels and when each was made.
    pub(crate) async fn leases_labeled(
        &self,
        prefix: &str,
        op: Op,
    ) -> Result<Vec<super::runtime::Labeled>> {
        let request = self.call(ListRequest {
            filters: Vec::new(),
        });
        let leases = self
            .leases()
            .list(request)
            .await
            .map_err(|s| status_error(&s, op))?
            .into_inner()
            .leases;
        Ok(leases
            .into_iter()
            .filter(|l| l.id.starts_with(prefix))
            .map(|l| super::runtime::Labeled {
                id: l.id,
                labels: l.labels,
                created: l.created_at.map(|t| t.seconds),
            })
            .collect())
    }
}
