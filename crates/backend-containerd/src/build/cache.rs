//! The step cache: what a layer step produced, found by a key covering its parent, its definition and the files
//! it reads, so a rebuild reuses every unchanged step and re-runs only from the first changed one.
//!
//! Records are small JSON files in berth's state folder. A record counts only while containerd still has what
//! it names (the committed snapshot and the layer blob); the blob carries `containerd.io/gc.root` and a
//! reference to its snapshot, so the collector keeps both after the build's lease is gone. At the start of a
//! build, a record not used for [`MAX_UNUSED`] is dropped, and then, while the records' layers hold more disk
//! than the size bound ([`crate::StepCacheMax`]), the least recently used ones ([`super::cache_bound`]); a
//! dropped record's blob loses the root label, so the collector can reclaim layers no image uses any more.
//!
//! Two builds on one namespace share the records and take no lock. A build adds the blob of every record it
//! uses to its own lease before checking that it is still there (the blobs of the steps it runs are in its lease
//! already), and the size pass never drops a record whose blob is in a berth lease; the age pass may (a record a
//! build just took from the cache is not a week old, unless the clock moved), and then the lease still keeps the
//! blob and, through its reference, the snapshot until the build using them ends.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_core::Result;
use serde_json::json;

use super::cache_bound::{held, over_bound, Entry};
use crate::convert::{Daemon, Descriptor, SnapshotKind};
use crate::errors::{io_error, Op};
use crate::labels::{self, sha256};

/// How long a step's layer is kept for the cache after its last use.
pub(crate) const MAX_UNUSED: Duration = Duration::from_secs(7 * 24 * 3600);

/// A layer a step made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    /// The compressed blob in the content store.
    pub(crate) blob: Descriptor,
    /// The digest of the uncompressed tar.
    pub(crate) diff_id: String,
    /// The chain id, which names the committed snapshot.
    pub(crate) chain: String,
}

/// The cache in one folder.
#[derive(Debug, Clone)]
pub(crate) struct StepCache {
    dir: PathBuf,
}

impl StepCache {
    pub(crate) fn new(dir: PathBuf) -> StepCache {
        StepCache { dir }
    }

    /// The key of a step: its parent chain and everything else it depends on.
    pub(crate) fn key(parent: Option<&str>, step: &str) -> String {
        let digest = sha256(format!("{}\n{step}", parent.unwrap_or("scratch")).as_bytes());
        digest.trim_start_matches("sha256:").to_string()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.json"))
    }

    /// The layer recorded for `key`, if containerd still has its snapshot and blob; the blob (and through its
    /// reference, the snapshot) is added to `lease`, the build's, first, so a concurrent build's prune that drops
    /// the record cannot let the collector take them while this build uses them.
    pub(crate) async fn get(
        &self,
        daemon: &Daemon,
        lease: &str,
        key: &str,
    ) -> Result<Option<Layer>> {
        let Ok(bytes) = std::fs::read(self.path(key)) else {
            return Ok(None);
        };
        let Ok(record) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            return Ok(None);
        };
        let text = |k: &str| record[k].as_str().unwrap_or_default().to_string();
        let layer = Layer {
            blob: Descriptor {
                media_type: text("media_type"),
                digest: text("digest"),
                size: record["size"].as_i64().unwrap_or_default(),
            },
            diff_id: text("diff_id"),
            chain: text("chain"),
        };
        if layer.blob.digest.is_empty() {
            return Ok(None);
        }
        daemon
            .lease_content(lease, &layer.blob.digest, Op::Build)
            .await?;
        let committed = daemon
            .stat_snapshot(&layer.chain, Op::Build)
            .await?
            .is_some_and(|info| info.kind == SnapshotKind::Committed);
        if !committed
            || daemon
                .content_labels(&layer.blob.digest, Op::Build)
                .await?
                .is_none()
        {
            return Ok(None);
        }
        // a hit counts as a use: the record's age is the time since its last use
        if let Ok(file) = std::fs::File::options().append(true).open(self.path(key)) {
            let _ = file.set_modified(SystemTime::now());
        }
        Ok(Some(layer))
    }

    /// The blob digest recorded for `key`, if any.
    fn recorded(&self, key: &str) -> Option<String> {
        Self::digest_in(&self.path(key))
    }

    fn digest_in(record: &Path) -> Option<String> {
        read_record(record)?["digest"].as_str().map(str::to_string)
    }

    /// Whether a record other than `except`'s names blob `digest` (two steps can make the same layer).
    fn named_elsewhere(&self, digest: &str, except: &Path) -> bool {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return false;
        };
        entries.flatten().any(|entry| {
            let path = entry.path();
            path != except
                && path.extension().is_some_and(|e| e == "json")
                && Self::digest_in(&path).as_deref() == Some(digest)
        })
    }

    /// Drops the root label of `digest`, unless a record other than `except` still names it; `false` when one
    /// does.
    async fn unroot(&self, daemon: &Daemon, digest: &str, except: &Path) -> Result<bool> {
        if self.named_elsewhere(digest, except) {
            return Ok(false);
        }
        daemon
            .remove_content_label(digest, labels::GC_ROOT, Op::Build)
            .await?;
        Ok(true)
    }

    /// Records `layer` for `key` and marks its blob (and through it, its snapshot) as a collector root. A layer
    /// that replaces another for the same key (a `--no-cache` build of a step whose output differs) takes the old
    /// blob's root away: no record names it any more, so nothing else would.
    ///
    /// The record keeps what the step holds on disk (blob and snapshot, see [`super::cache_bound`]) and the
    /// chain it was built on (`parent`), for the size bound.
    pub(crate) async fn put(
        &self,
        daemon: &Daemon,
        key: &str,
        parent: Option<&str>,
        layer: &Layer,
    ) -> Result<()> {
        let replaced = self
            .recorded(key)
            .filter(|digest| *digest != layer.blob.digest);
        let labels = HashMap::from([
            (
                labels::GC_ROOT.to_string(),
                labels::rfc3339(std::time::SystemTime::now()),
            ),
            (
                labels::snapshot_ref(&daemon.snapshotter),
                layer.chain.clone(),
            ),
        ]);
        daemon
            .set_content_labels(&layer.blob.digest, &labels, Op::Build)
            .await?;
        let record = json!({
            "media_type": layer.blob.media_type,
            "digest": layer.blob.digest,
            "size": layer.blob.size,
            "diff_id": layer.diff_id,
            "chain": layer.chain,
            "parent": parent,
            "disk": disk_size(daemon, layer.blob.size, &layer.chain).await,
        });
        std::fs::create_dir_all(&self.dir)
            .map_err(|e| io_error(Op::Build, self.dir.display(), e))?;
        let tmp = self.dir.join(format!(".{key}.{:x}", fastrand::u64(..)));
        std::fs::write(&tmp, record.to_string())
            .map_err(|e| io_error(Op::Build, tmp.display(), e))?;
        std::fs::rename(&tmp, self.path(key))
            .map_err(|e| io_error(Op::Build, self.dir.display(), e))?;
        if let Some(old) = replaced {
            // what stays rooted is only disk space: the build itself succeeded
            let _ = self.unroot(daemon, &old, &self.path(key)).await;
        }
        Ok(())
    }

    /// Drops records unused for longer than `max_unused`, then, while the rest hold more than `bound` bytes
    /// (`None`: no bound), the least recently used ones; and the root label of their blobs (best effort: a record
    /// that cannot be read or a blob that is gone is simply dropped). Returns what went.
    pub(crate) async fn prune(
        &self,
        daemon: &Daemon,
        max_unused: Duration,
        bound: Option<u64>,
    ) -> Pruned {
        let mut pruned = Pruned::default();
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return pruned;
        };
        let now = SystemTime::now();
        let mut kept = Vec::new();
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "json") {
                continue;
            }
            let used = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
            let record = read_record(&path);
            if now.duration_since(used).unwrap_or_default() <= max_unused {
                // a record that cannot be read is left to the age bound
                kept.extend(record.map(|record| (path, used, record)));
                continue;
            }
            let size = match &record {
                Some(record) => record_size(daemon, record).await,
                None => 0,
            };
            self.drop_record(daemon, &path, size, &mut pruned).await;
        }
        let Some(bound) = bound else {
            return pruned;
        };
        // what running builds use cannot be known: the size pass waits for the next build
        let Ok(in_use) = in_use(daemon).await else {
            return pruned;
        };
        let mut sized = Vec::with_capacity(kept.len());
        for (path, used, record) in kept {
            let text = |k: &str| record[k].as_str().map(str::to_string);
            let digest = text("digest").unwrap_or_default();
            sized.push(Entry {
                size: record_size(daemon, &record).await,
                blob: record["size"].as_u64().unwrap_or_default(),
                in_use: in_use.contains(&digest),
                digest,
                chain: text("chain").unwrap_or_default(),
                parent: text("parent"),
                path,
                used,
            });
        }
        let dropped = over_bound(&sized, bound);
        let before = (pruned.records, held(&sized));
        for &i in &dropped {
            self.drop_record(daemon, &sized[i].path, 0, &mut pruned)
                .await;
        }
        if pruned.records > before.0 {
            // what the collector can take: blobs and snapshots no record left holds
            let left = sized
                .iter()
                .enumerate()
                .filter(|(i, entry)| !dropped.contains(i) || entry.path.exists())
                .map(|(_, entry)| entry);
            pruned.bytes += before.1.saturating_sub(held(left));
        }
        pruned
    }

    /// Drops the record at `path` (of a step holding `size` bytes) and its blob's root, unless another record
    /// names it; a blob whose root cannot be taken keeps its record.
    async fn drop_record(&self, daemon: &Daemon, path: &Path, size: u64, pruned: &mut Pruned) {
        let freed = match Self::digest_in(path) {
            Some(digest) => match self.unroot(daemon, &digest, path).await {
                Ok(freed) => freed,
                Err(_) => return,
            },
            None => true,
        };
        if std::fs::remove_file(path).is_ok() {
            pruned.records += 1;
            if freed {
                pruned.bytes += size;
            }
        }
    }
}

/// What a prune dropped.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pruned {
    /// Records dropped.
    pub(crate) records: usize,
    /// Bytes their steps held on disk (what the collector can reclaim, unless an image still uses a layer).
    pub(crate) bytes: u64,
}

/// The blobs berth's operations in progress (builds, pulls) hold in their leases.
async fn in_use(daemon: &Daemon) -> Result<HashSet<String>> {
    let mut digests = HashSet::new();
    for lease in daemon.lease_ids(crate::ID_PREFIX, Op::Build).await? {
        digests.extend(daemon.leased_content(&lease, Op::Build).await?);
    }
    Ok(digests)
}

fn read_record(path: &Path) -> Option<serde_json::Value> {
    let bytes = std::fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// What a record's step holds on disk: as recorded, else (a record from before records had a size) the blob's
/// size and its snapshot's usage as containerd says now.
async fn record_size(daemon: &Daemon, record: &serde_json::Value) -> u64 {
    if let Some(disk) = record["disk"].as_u64() {
        return disk;
    }
    let blob = record["size"].as_i64().unwrap_or_default();
    disk_size(daemon, blob, record["chain"].as_str().unwrap_or_default()).await
}

/// A blob of `blob` bytes and the usage of snapshot `chain` (the blob alone when containerd cannot say).
async fn disk_size(daemon: &Daemon, blob: i64, chain: &str) -> u64 {
    let snapshot = match daemon.snapshot_usage(chain, Op::Build).await {
        Ok(Some(usage)) => usage,
        _ => 0,
    };
    (blob.max(0) as u64).saturating_add(snapshot)
}
