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

/// containerd refuses a label whose key and value together are longer than this (bytes).
const MAX_LABEL: usize = 4096;

/// The distribution-source value after `repository` pushed or mounted the blob: the repositories already named,
/// oldest first, then `repository`; the oldest are dropped so that `key` and the value fit containerd's limit.
/// `None` when `repository` is already named (nothing to write) or cannot fit at all.
pub(crate) fn with_source(key: &str, current: Option<&str>, repository: &str) -> Option<String> {
    let mut repos: Vec<&str> = current
        .map(|v| v.split(',').filter(|r| !r.is_empty()).collect())
        .unwrap_or_default();
    if repos.contains(&repository) {
        return None;
    }
    repos.push(repository);
    let room = MAX_LABEL.checked_sub(key.len())?;
    let mut value = repos.join(",");
    while value.len() > room && repos.len() > 1 {
        repos.remove(0);
        value = repos.join(",");
    }
    (value.len() <= room).then_some(value)
}

pub(crate) use berth_layer::oci::sha256;

/// A fresh id for something berth creates in containerd: `berth-<what>-<random>`.
pub(crate) fn unique_id(what: &str) -> String {
    format!("{ID_PREFIX}{what}-{:016x}", fastrand::u64(..))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_repository_is_added_last() {
        let key = distribution_source("127.0.0.1:5000");
        assert_eq!(with_source(&key, None, "a/b").as_deref(), Some("a/b"));
        assert_eq!(
            with_source(&key, Some("a/b"), "c").as_deref(),
            Some("a/b,c")
        );
        assert_eq!(with_source(&key, Some("a/b,c"), "a/b"), None);
    }

    #[test]
    fn the_oldest_repositories_make_room_under_containerds_limit() {
        let key = distribution_source("127.0.0.1:5000");
        let many: Vec<String> = (0..200)
            .map(|i| format!("berth-e2e/repository-{i:04}"))
            .collect();
        let current = many.join(",");
        assert!(key.len() + current.len() > MAX_LABEL);
        let value = with_source(&key, Some(&current), "new/one").expect("the new repository fits");
        assert!(key.len() + value.len() <= MAX_LABEL, "{}", value.len());
        assert!(value.ends_with(",new/one"));
        assert!(!value.contains("repository-0000,"));
        assert!(value.contains("repository-0199"));
    }

    #[test]
    fn a_repository_longer_than_the_limit_is_not_written() {
        let key = distribution_source("r");
        assert_eq!(with_source(&key, Some("a"), &"x".repeat(MAX_LABEL)), None);
    }
}
