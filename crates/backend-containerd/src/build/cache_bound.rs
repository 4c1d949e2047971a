//! The prune each build starts with ([`prune`]), and which step-cache records go when the cache's layers hold more
//! disk than its size bound ([`crate::StepCacheMax`]): the least recently used first, until the rest fit.
//!
//! A record's size is what the disk holds for its step: the compressed blob in the content store plus the
//! committed snapshot's own files, as containerd's snapshots `Usage` call reports them. Measured here on the
//! overlayfs snapshotter, the blob alone would count a 26 MB random layer as half of its 51 MB and a 684-byte
//! layer as a 40th of its 28 KiB (a snapshot takes whole blocks), so the snapshot is counted too. `Usage` answers
//! from containerd's metadata for a committed snapshot (measured once, at commit), so the size is asked for once,
//! when the step is cached, and kept in the record: pruning reads files, not the daemon. A record written before
//! records had a size is asked about once per prune instead.
//!
//! "Recently used" is a chain's last use, not each record's alone: a build touches its steps' records in order,
//! so a chain's first step always looks less recently used than its last. Dropping a parent step
//! first would free only its blob (the child's snapshot keeps the parent's snapshot) and make every later step
//! miss; so a record counts as used when any record built on it was, and of a chain used together the last step
//! goes first. Two records naming one blob count it once, and dropping one of them frees nothing.
//!
//! A record whose blob a running build holds in its lease (a step it took from the cache, or one it made) is
//! never dropped for size: builds on one namespace take no lock, and the one pruning sees the others through
//! their leases (a berth lease from a build that was killed protects its records until it expires, a day).

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::time::SystemTime;

use berth_core::engine::{Progress, ProgressEvent};

use super::cache::StepCache;
use super::Builder;
use crate::step_cache_max::{disk_size, StepCacheMax};

/// Prunes the step cache by age and size before the build adds to it, and says what that freed (a status line,
/// which a terminal shows at `-v`; nothing when nothing went).
pub(super) async fn prune(builder: &Builder<'_>, cache: &StepCache, progress: &dyn Progress) {
    let setting = builder.engine.options.step_cache_max;
    // the disk the bound is a share of: the one a step's snapshot fills, else the state folder's
    let disk = match setting {
        StepCacheMax::Off | StepCacheMax::Bytes(_) => None,
        StepCacheMax::Default | StepCacheMax::Percent(_) => {
            let root = builder.daemon.snapshotter_root().await.ok().flatten();
            root.and_then(|root| disk_size(std::path::Path::new(&root)))
                .or_else(|| disk_size(&builder.state_dir))
        }
    };
    let bound = setting.bytes(disk);
    let pruned = cache
        .prune(&builder.daemon, super::cache::MAX_UNUSED, bound)
        .await;
    // the records of what COPY steps made and read: small, and only worth keeping while their steps are
    for folder in [
        super::layer_memo::folder(&builder.state_dir),
        builder.state_dir.join(berth_layer::copy::DIGESTS_FOLDER),
    ] {
        berth_layer::memo::prune(&folder, super::cache::MAX_UNUSED);
    }
    if pruned.records > 0 {
        let limit = bound.map_or("no size bound".to_string(), |b| {
            format!("size bound {}", human_size(b))
        });
        progress.event(ProgressEvent::Line(format!(
            "step cache: dropped the {} least recently used record(s), {} of layers ({limit}: {})",
            pruned.records,
            human_size(pruned.bytes),
            crate::EnvVars::BERTH_CONTAINERD_STEP_CACHE_MAX,
        )));
    }
}

/// `bytes` for people: `1.5 GiB`.
fn human_size(bytes: u64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < units.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", units[unit])
    }
}

/// A record as the size bound sees it.
#[derive(Debug, Clone)]
pub(crate) struct Entry {
    /// The record's file.
    pub(crate) path: PathBuf,
    /// The layer blob it names.
    pub(crate) digest: String,
    /// The chain id of its snapshot.
    pub(crate) chain: String,
    /// The chain id of the snapshot it was built on, if the record says.
    pub(crate) parent: Option<String>,
    /// Bytes on disk for the step (blob and snapshot).
    pub(crate) size: u64,
    /// Of those, the blob's (the rest is the snapshot's).
    pub(crate) blob: u64,
    /// Its last use (the record's modification time).
    pub(crate) used: SystemTime,
    /// A running build holds its blob (in its lease): it counts, but never goes.
    pub(crate) in_use: bool,
}

impl Entry {
    /// The bytes of its snapshot.
    fn snapshot(&self) -> u64 {
        self.size.saturating_sub(self.blob)
    }
}

/// The bytes `entries` hold on disk: each blob once, each chain's snapshot once.
pub(crate) fn held<'a>(entries: impl IntoIterator<Item = &'a Entry>) -> u64 {
    let (mut blobs, mut chains) = (HashSet::new(), HashSet::new());
    let mut total = 0u64;
    for entry in entries {
        if blobs.insert(entry.digest.as_str()) {
            total = total.saturating_add(entry.blob);
        }
        if chains.insert(entry.chain.as_str()) {
            total = total.saturating_add(entry.snapshot());
        }
    }
    total
}

/// The indices of the `entries` to drop, in order, so that the rest hold at most `bound` bytes (or as few as
/// possible, when records in use alone hold more).
pub(crate) fn over_bound(entries: &[Entry], bound: u64) -> Vec<usize> {
    // a chain's last use: each record's use raises its ancestors'
    let mut last_use: Vec<SystemTime> = entries.iter().map(|e| e.used).collect();
    let mut by_chain: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, entry) in entries.iter().enumerate() {
        by_chain.entry(entry.chain.as_str()).or_default().push(i);
    }
    for entry in entries {
        let mut parent = entry.parent.as_deref();
        // records form a tree (a chain id covers its parents'), so this ends; the bound guards a corrupt record
        for _ in 0..entries.len() {
            let Some(ancestors) = parent.and_then(|p| by_chain.get(p)) else {
                break;
            };
            let stale: Vec<usize> = ancestors
                .iter()
                .copied()
                .filter(|&a| last_use[a] < entry.used)
                .collect();
            if stale.is_empty() {
                break;
            }
            for &a in &stale {
                last_use[a] = entry.used;
            }
            parent = entries[stale[0]].parent.as_deref();
        }
    }
    // a blob is on disk once however many records name it, and so is a chain's snapshot; records of one blob
    // on different chains (the same files copied onto a parent that changed) each hold a snapshot of their own
    let mut total = held(entries);
    let (mut named, mut chained) = (HashMap::new(), HashMap::new());
    for entry in entries {
        *named.entry(entry.digest.as_str()).or_insert(0usize) += 1;
        *chained.entry(entry.chain.as_str()).or_insert(0usize) += 1;
    }
    let mut order: Vec<usize> = (0..entries.len()).collect();
    // least recently used chain first; within a chain used together, the later step first
    order.sort_by(|&a, &b| {
        last_use[a]
            .cmp(&last_use[b])
            .then(entries[b].used.cmp(&entries[a].used))
    });
    let mut dropped = Vec::new();
    for i in order.into_iter().filter(|&i| !entries[i].in_use) {
        if total <= bound {
            break;
        }
        let entry = &entries[i];
        let count = named.get_mut(entry.digest.as_str()).expect("counted");
        *count -= 1;
        if *count == 0 {
            total = total.saturating_sub(entry.blob);
        }
        let count = chained.get_mut(entry.chain.as_str()).expect("counted");
        *count -= 1;
        if *count == 0 {
            total = total.saturating_sub(entry.snapshot());
        }
        dropped.push(i);
    }
    dropped
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn entry(name: &str, parent: Option<&str>, size: u64, minute: u64) -> Entry {
        Entry {
            path: PathBuf::from(format!("{name}.json")),
            digest: format!("blob-{name}"),
            chain: format!("chain-{name}"),
            parent: parent.map(|p| format!("chain-{p}")),
            size,
            blob: size / 2,
            used: SystemTime::UNIX_EPOCH + Duration::from_secs(60 * minute),
            in_use: false,
        }
    }

    fn names(entries: &[Entry], dropped: &[usize]) -> Vec<String> {
        dropped
            .iter()
            .map(|&i| entries[i].path.display().to_string())
            .collect()
    }

    #[test]
    fn the_least_recently_used_go_until_the_rest_fit() {
        let entries = vec![
            entry("c", None, 100, 3),
            entry("a", None, 100, 1),
            entry("b", None, 100, 2),
        ];
        assert_eq!(
            names(&entries, &over_bound(&entries, 300)),
            Vec::<String>::new()
        );
        assert_eq!(names(&entries, &over_bound(&entries, 250)), ["a.json"]);
        assert_eq!(
            names(&entries, &over_bound(&entries, 100)),
            ["a.json", "b.json"]
        );
        assert_eq!(
            names(&entries, &over_bound(&entries, 0)),
            ["a.json", "b.json", "c.json"]
        );
    }

    #[test]
    fn a_record_a_running_build_uses_never_goes() {
        let mut entries = vec![
            entry("a", None, 100, 1),
            entry("b", None, 100, 2),
            entry("c", None, 100, 3),
        ];
        entries[0].in_use = true;
        assert_eq!(names(&entries, &over_bound(&entries, 200)), ["b.json"]);
        assert_eq!(
            names(&entries, &over_bound(&entries, 0)),
            ["b.json", "c.json"]
        );
    }

    #[test]
    fn a_chain_counts_as_used_when_its_last_step_was() {
        // an old build's chain one -> two -> three (its last step used at minute 12), and a newer build's single
        // step used at minute 11: the newer step is older than the old chain's last use, but newer than its
        // first steps' own use
        let entries = vec![
            entry("one", None, 100, 10),
            entry("two", Some("one"), 100, 11),
            entry("three", Some("two"), 100, 12),
            entry("other", None, 100, 11),
        ];
        assert_eq!(names(&entries, &over_bound(&entries, 300)), ["other.json"]);
        // past that, the chain goes from its end
        assert_eq!(
            names(&entries, &over_bound(&entries, 100)),
            ["other.json", "three.json", "two.json"]
        );
        // a chain used at minute 20 through a new last step keeps all of it
        let mut newer = entries.clone();
        newer.push(entry("four", Some("three"), 100, 20));
        assert_eq!(names(&newer, &over_bound(&newer, 400)), ["other.json"]);
    }

    #[test]
    fn a_blob_two_records_name_counts_once_and_frees_with_the_last() {
        // the same blob (50 bytes) on one chain twice: one blob, one snapshot on disk
        let mut twin = entry("twin", None, 100, 1);
        twin.digest = "blob-shared".into();
        let mut other_twin = twin.clone();
        other_twin.path = "other-twin.json".into();
        other_twin.used += Duration::from_secs(60);
        let entries = vec![twin, other_twin, entry("new", None, 100, 3)];
        // 200 bytes on disk: nothing goes
        assert!(over_bound(&entries, 200).is_empty());
        // to fit in 100, both records of the shared blob go (the first frees nothing)
        assert_eq!(
            names(&entries, &over_bound(&entries, 100)),
            ["twin.json", "other-twin.json"]
        );
    }

    #[test]
    fn one_blob_on_many_chains_counts_a_snapshot_for_each() {
        // a `COPY` whose parent differs in every build (a RUN step writing a timestamp): the same 50-byte blob on
        // a new chain each time, each chain a 50-byte snapshot of its own; the bound counted the blob alone, and
        // 35 GB of snapshots piled up under a 10 GiB bound
        let entries: Vec<Entry> = (1..=6)
            .map(|minute| {
                let mut copy = entry(&format!("build{minute}"), None, 100, minute);
                copy.digest = "blob-copy".into();
                copy
            })
            .collect();
        // on disk: one blob and six snapshots, 350 bytes
        assert!(over_bound(&entries, 350).is_empty());
        // to fit in 200: the three oldest builds' records go
        assert_eq!(
            names(&entries, &over_bound(&entries, 200)),
            ["build1.json", "build2.json", "build3.json"]
        );
    }
}
