//! The only place that touches containerd's generated gRPC types.
//!
//! Everything outside this module works with the native types below ([`Descriptor`], [`MountSpec`],
//! [`ImageRecord`], [`SnapshotInfo`]) and calls the [`Daemon`] methods, which build the requests, add the
//! namespace (and lease) headers, and turn every `tonic::Status` into a berth error through
//! [`crate::errors::status_error`]. The namespace is validated before a [`Daemon`] exists, and header values are
//! built with `try_from`, so nothing here can panic on a bad string (containerd-client's `with_namespace!` would).

mod content;
mod images;
mod runtime;
mod snapshots;

use std::collections::HashMap;
use std::time::Duration;

use berth_core::{Error, ErrorKind, Result};
use containerd_client::tonic::metadata::MetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;

use crate::errors::{status_error, Op};
use crate::ENGINE;

pub(crate) use content::{BlobEnd, BlobStream};
pub(crate) use runtime::{ContainerSpec, Labeled};

/// A content descriptor: what a manifest names and the content store keeps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) media_type: String,
    pub(crate) digest: String,
    pub(crate) size: i64,
}

/// A mount as snapshotters describe them (`overlay` with `lowerdir=...`, `bind`, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct MountSpec {
    pub(crate) kind: String,
    pub(crate) source: String,
    pub(crate) options: Vec<String>,
}

/// An image record of the images service: a name pointing at a manifest or index.
#[derive(Debug, Clone)]
pub(crate) struct ImageRecord {
    pub(crate) target: Descriptor,
    pub(crate) labels: HashMap<String, String>,
}

/// What the snapshots service says about a snapshot.
#[derive(Debug, Clone)]
pub(crate) struct SnapshotInfo {
    pub(crate) kind: SnapshotKind,
}

/// A snapshot's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SnapshotKind {
    View,
    Active,
    Committed,
    Unknown,
}

/// How long calls may take: a daemon that stops answering fails the build instead of hanging it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timeouts {
    /// Deadline of each short call ([`Daemon::call`]).
    pub(crate) call: Duration,
    /// Longest wait for the next message of a content stream.
    pub(crate) idle: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            call: Duration::from_secs(60),
            idle: Duration::from_secs(120),
        }
    }
}

/// A connection to containerd in one namespace, optionally attaching every request to a lease.
#[derive(Clone)]
pub(crate) struct Daemon {
    channel: Channel,
    timeouts: Timeouts,
    namespace: MetadataValue<containerd_client::tonic::metadata::Ascii>,
    lease: Option<MetadataValue<containerd_client::tonic::metadata::Ascii>>,
    /// The snapshotter every snapshot call uses.
    pub(crate) snapshotter: String,
}

impl std::fmt::Debug for Daemon {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Daemon")
            .field("namespace", &self.namespace)
            .field("lease", &self.lease)
            .field("snapshotter", &self.snapshotter)
            .finish_non_exhaustive()
    }
}

/// A header value from a string berth checked already; a failure is a protocol error, never a panic.
fn header(value: &str) -> Result<MetadataValue<containerd_client::tonic::metadata::Ascii>> {
    MetadataValue::try_from(value).map_err(|_| {
        Error::new(
            ErrorKind::InvalidSpec,
            format!("`{value}` cannot be sent in a gRPC header"),
        )
        .with_engine(ENGINE)
    })
}

impl Daemon {
    /// Connects to the socket at `path`, within `timeout`; `namespace` must be validated already.
    pub(crate) async fn connect(
        path: &std::path::Path,
        namespace: &str,
        snapshotter: &str,
        timeout: Duration,
    ) -> Result<Daemon> {
        let namespace = header(namespace)?;
        let channel = match tokio::time::timeout(timeout, containerd_client::connect(path)).await {
            Ok(Ok(channel)) => channel,
            Ok(Err(e)) => return Err(crate::errors::connect_error(path, &e.to_string())),
            Err(_) => {
                return Err(crate::errors::connect_error(
                    path,
                    &format!("no answer within {:.0}s", timeout.as_secs_f64()),
                ))
            }
        };
        Ok(Daemon {
            channel,
            timeouts: Timeouts::default(),
            namespace,
            lease: None,
            snapshotter: snapshotter.to_string(),
        })
    }

    /// The same connection with every request attached to lease `id`.
    pub(crate) fn with_lease(&self, id: &str) -> Result<Daemon> {
        Ok(Daemon {
            lease: Some(header(id)?),
            ..self.clone()
        })
    }

    /// The same connection with these timeouts.
    pub(crate) fn with_timeouts(self, timeouts: Timeouts) -> Daemon {
        Daemon { timeouts, ..self }
    }

    /// A request for a short call: [`Daemon::request`] with the call deadline, which tonic enforces on the
    /// client (and sends as `grpc-timeout`, so containerd gives up too).
    fn call<T>(&self, message: T) -> Request<T> {
        let mut request = self.request(message);
        request.set_timeout(self.timeouts.call);
        request
    }

    /// A request carrying the namespace (and lease) headers, without a deadline: for calls whose length
    /// depends on the work. Prefer [`Daemon::call`].
    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        let metadata = request.metadata_mut();
        metadata.insert("containerd-namespace", self.namespace.clone());
        if let Some(lease) = &self.lease {
            metadata.insert("containerd-lease", lease.clone());
        }
        request
    }

    /// The server's version.
    pub(crate) async fn version(&self) -> Result<String> {
        let mut client = containerd_client::services::v1::version_client::VersionClient::new(
            self.channel.clone(),
        );
        let response = client
            .version(self.call(()))
            .await
            .map_err(|s| status_error(&s, Op::Connect))?;
        Ok(response.into_inner().version)
    }
}

impl Daemon {
    /// Where the snapshotter keeps its snapshots (its plugin's `root` export, under containerd's `root`): the
    /// file system a RUN step fills. `None` when the daemon does not say.
    pub(crate) async fn snapshotter_root(&self) -> Result<Option<String>> {
        use containerd_client::services::v1::introspection_client::IntrospectionClient;
        use containerd_client::services::v1::PluginsRequest;
        let mut client = IntrospectionClient::new(self.channel.clone());
        let filter = format!(
            "type==io.containerd.snapshotter.v1,id=={}",
            self.snapshotter
        );
        let response = client
            .plugins(self.call(PluginsRequest {
                filters: vec![filter],
            }))
            .await
            .map_err(|s| status_error(&s, Op::Inspect))?;
        Ok(response
            .into_inner()
            .plugins
            .into_iter()
            .find_map(|mut plugin| plugin.exports.remove("root")))
    }
}

impl From<containerd_client::types::Descriptor> for Descriptor {
    fn from(d: containerd_client::types::Descriptor) -> Self {
        Descriptor {
            media_type: d.media_type,
            digest: d.digest,
            size: d.size,
        }
    }
}

impl From<&Descriptor> for containerd_client::types::Descriptor {
    fn from(d: &Descriptor) -> Self {
        containerd_client::types::Descriptor {
            media_type: d.media_type.clone(),
            digest: d.digest.clone(),
            size: d.size,
            annotations: HashMap::new(),
        }
    }
}

impl From<containerd_client::types::Mount> for MountSpec {
    fn from(m: containerd_client::types::Mount) -> Self {
        MountSpec {
            kind: m.r#type,
            source: m.source,
            options: m.options,
        }
    }
}

impl From<&MountSpec> for containerd_client::types::Mount {
    fn from(m: &MountSpec) -> Self {
        containerd_client::types::Mount {
            r#type: m.kind.clone(),
            source: m.source.clone(),
            target: String::new(),
            options: m.options.clone(),
        }
    }
}

fn mounts_out(mounts: &[MountSpec]) -> Vec<containerd_client::types::Mount> {
    mounts.iter().map(Into::into).collect()
}

fn mounts_in(mounts: Vec<containerd_client::types::Mount>) -> Vec<MountSpec> {
    mounts.into_iter().map(Into::into).collect()
}

/// A missing field in an answer is the daemon's protocol error.
fn missing(what: &str, op: Op) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("containerd answered without {what}"),
    )
    .with_engine(ENGINE)
    .with_operation(op.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_tests::fake_http::{Answer, FakeServer};

    #[tokio::test]
    async fn a_daemon_that_stops_answering_fails_a_short_call_at_its_deadline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("containerd.sock");
        // accepts the connection and never says a word: no HTTP/2 settings, no answers
        let _server = FakeServer::unix(&socket, |_| Answer::stall());
        let guard = Duration::from_secs(60);
        let daemon = tokio::time::timeout(
            guard,
            Daemon::connect(&socket, "default", "overlayfs", guard),
        )
        .await
        .expect("connecting does not wait for the daemon to speak")
        .expect("connected")
        .with_timeouts(Timeouts {
            call: Duration::from_millis(300),
            idle: Duration::from_millis(300),
        });
        let found = tokio::time::timeout(guard, daemon.get_image("x", Op::Inspect))
            .await
            .expect("hung: a call without a deadline");
        let err = found.expect_err("no answer");
        assert_eq!(err.engine(), Some(ENGINE), "{err}");
    }
}
