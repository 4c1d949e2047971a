//! The names containerd's garbage collector and tools read (labels), chain ids, berth's ids and timestamps.

pub(crate) use berth_layer::oci::{chain_id, rfc3339};

use crate::ID_PREFIX;

/// On a manifest: its config blob.
pub(crate) const REF_CONFIG: &str = "containerd.io/gc.ref.content.config";
/// Prefix on a manifest: its layers (`.l.<index>`); on an index: its manifests (`.m.<index>`).
pub(crate) const REF_CONTENT: &str = "containerd.io/gc.ref.content";
/// Prefix on a config or cache blob: the snapshot (chain id) it keeps alive, per snapshotter.
pub(crate) const REF_SNAPSHOT: &str = "containerd.io/gc.ref.snapshot";
/// On a compressed layer: the digest of its uncompressed tar (the diff id).
pub(crate) const UNCOMPRESSED: &str = "containerd.io/uncompressed";
/// Prefix on a blob: the repository it came from, per registry host (what push mounts from).
pub(crate) const DISTRIBUTION_SOURCE: &str = "containerd.io/distribution.source";
/// Marks an object the collector must keep by itself (berth's step cache).
pub(crate) const GC_ROOT: &str = "containerd.io/gc.root";
/// On a lease: when the collector may drop it if berth never deleted it.
pub(crate) const GC_EXPIRE: &str = "containerd.io/gc.expire";

/// The label naming the snapshot of `snapshotter` a blob keeps alive.
pub(crate) fn snapshot_ref(snapshotter: &str) -> String {
    format!("{REF_SNAPSHOT}.{snapshotter}")
}

/// The distribution-source label for `registry`.
pub(crate) fn distribution_source(registry: &str) -> String {
    format!("{DISTRIBUTION_SOURCE}.{registry}")
}

pub(crate) use berth_layer::oci::sha256;

/// A fresh id for something berth creates in containerd: `berth-<what>-<random>`.
pub(crate) fn unique_id(what: &str) -> String {
    format!("{ID_PREFIX}{what}-{:016x}", fastrand::u64(..))
}
