//! The step cache: what a layer step produced, found by a key covering its parent, its definition and the files
//! it reads, so a rebuild reuses every unchanged step and re-runs only from the first changed one.
//!
//! Records are small JSON files in berth's state folder. A record counts only while containerd still has what
//! it names (the committed snapshot and the layer blob); the blob carries `containerd.io/gc.root` and a
//! reference to its snapshot, so the collector keeps both after the build's lease is gone. A record not used for
//! [`MAX_UNUSED`] is dropped at the start of a build and its blob loses the root label, so the collector can
//! reclaim layers no image uses any more.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_core::Result;
use serde_json::json;

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

    /// The layer recorded for `key`, if containerd still has its snapshot and blob.
    pub(crate) async fn get(&self, daemon: &Daemon, key: &str) -> Result<Option<Layer>> {
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
        let bytes = std::fs::read(record).ok()?;
        let record: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        record["digest"].as_str().map(str::to_string)
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

    /// Drops the root label of `digest`, unless a record other than `except` still names it (best effort).
    async fn unroot(&self, daemon: &Daemon, digest: &str, except: &Path) -> Result<()> {
        if self.named_elsewhere(digest, except) {
            return Ok(());
        }
        daemon
            .remove_content_label(digest, labels::GC_ROOT, Op::Build)
            .await
    }

    /// Records `layer` for `key` and marks its blob (and through it, its snapshot) as a collector root. A layer
    /// that replaces another for the same key (a `--no-cache` build of a step whose output differs) takes the old
    /// blob's root away: no record names it any more, so nothing else would.
    pub(crate) async fn put(&self, daemon: &Daemon, key: &str, layer: &Layer) -> Result<()> {
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

    /// Drops records unused for longer than `max_unused`, and the root label of their blobs (best effort: a
    /// record that cannot be read or a blob that is gone is simply dropped).
    pub(crate) async fn prune(&self, daemon: &Daemon, max_unused: Duration) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let now = SystemTime::now();
        for entry in entries.flatten() {
            let path = entry.path();
            let unused = entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|modified| now.duration_since(modified).ok())
                .unwrap_or_default();
            if path.extension().is_none_or(|e| e != "json") || unused <= max_unused {
                continue;
            }
            if let Some(digest) = Self::digest_in(&path) {
                if self.unroot(daemon, &digest, &path).await.is_err() {
                    continue;
                }
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}
