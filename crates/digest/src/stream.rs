//! The md5 digest of an ordered file list, with the cache in front of it:
//! a whole-digest lookup first, then resuming from the last checkpoint whose
//! files are unchanged, then storing the digest and fresh checkpoints.

use std::time::SystemTime;

use crate::cache::{stream_id, Checkpoint, DigestCache, KeyBuilder, Stamp};
use crate::fastmd5::Md5;
use crate::hash::{hex, md5_files, Job, Mode, Stats};
use crate::{DigestError, SourceFile};

/// Checkpoints are planned after the first file that ends at or beyond
/// each multiple of this many bytes of content (by listed sizes, so the
/// plan is the same for an unchanged prefix).
#[cfg(not(test))]
const CHECKPOINT_EVERY: u64 = 32 * 1024 * 1024;
/// Small in unit tests, so small trees get checkpoints.
#[cfg(test)]
pub(crate) const CHECKPOINT_EVERY: u64 = 1024;

/// What one digest computation did (for tests).
#[derive(Debug)]
#[cfg_attr(not(test), allow(dead_code))]
pub(crate) struct Outcome {
    pub(crate) digest: String,
    pub(crate) from_cache: bool,
    /// Index of the first file hashed, when resumed from a checkpoint.
    pub(crate) resumed_at: Option<usize>,
    pub(crate) stats: Stats,
}

/// Indices after which a checkpoint is taken.
fn checkpoint_plan(files: &[SourceFile]) -> Vec<usize> {
    let mut plan = Vec::new();
    let mut total = 0u64;
    let mut next = CHECKPOINT_EVERY;
    for (i, f) in files.iter().enumerate() {
        total += f.size;
        if total >= next {
            plan.push(i);
            next = (total / CHECKPOINT_EVERY + 1) * CHECKPOINT_EVERY;
        }
    }
    plan
}

/// md5 hex over `files`: for each, its content then `relative` without
/// `/`. `identity` names the stream for checkpoints (root or copy list).
pub(crate) fn digest_files(
    kind: &'static str,
    identity: &[u8],
    files: &[SourceFile],
    stamps: &[Stamp],
    listed_at: SystemTime,
    cache: Option<&DigestCache>,
    mode: Mode,
) -> Result<Outcome, DigestError> {
    let jobs: Vec<Job> = files
        .iter()
        .map(|f| Job {
            path: f.absolute.clone(),
            name: f.relative.bytes().filter(|&b| b != b'/').collect(),
            size: f.size,
        })
        .collect();
    let Some(cache) = cache.filter(|c| c.dir().is_some()) else {
        let run = md5_files(&jobs, Md5::default(), &[], mode)?;
        return Ok(Outcome {
            digest: hex(&run.md5.finalize()),
            from_cache: false,
            resumed_at: None,
            stats: run.stats,
        });
    };

    let plan = checkpoint_plan(files);
    let mut kb = KeyBuilder::new(kind, 32, listed_at);
    let mut prefix_keys: Vec<(usize, Option<String>)> = Vec::with_capacity(plan.len());
    let mut planned = plan.iter().copied().peekable();
    for (i, (job, stamp)) in jobs.iter().zip(stamps).enumerate() {
        kb.file(&job.name, &job.path, stamp);
        if planned.next_if_eq(&i).is_some() {
            prefix_keys.push((i, kb.snapshot()));
        }
    }
    let key = kb.finish();
    if let Some(digest) = cache.lookup(&key) {
        return Ok(Outcome {
            digest,
            from_cache: true,
            resumed_at: None,
            stats: Stats::default(),
        });
    }

    // Resume from the last stored checkpoint that still matches.
    let stream = stream_id(kind, identity);
    let stored = cache.load_checkpoints(&stream);
    let still_valid = |index: usize, key: &Option<String>| -> Option<&Checkpoint> {
        let key = key.as_ref()?;
        stored
            .iter()
            .find(|c| c.index == index && &c.prefix_key == key)
    };
    let mut start = 0;
    let mut md5 = Md5::default();
    for (index, key) in prefix_keys.iter().rev() {
        if let Some(state) = still_valid(*index, key).and_then(|c| Md5::decode(&c.state)) {
            start = index + 1;
            md5 = state;
            break;
        }
    }
    let later: Vec<usize> = plan
        .iter()
        .filter(|&&i| i >= start)
        .map(|&i| i - start)
        .collect();
    let run = md5_files(&jobs[start..], md5, &later, mode)?;
    let digest = hex(&run.md5.clone().finalize());
    cache.store(&key, &digest);

    let mut fresh: Vec<Checkpoint> = Vec::new();
    for (index, key) in &prefix_keys {
        let Some(prefix_key) = key.clone() else {
            break; // a racy file: nothing from here on may be stored
        };
        let state = if *index < start {
            still_valid(*index, key).map(|c| c.state.clone())
        } else {
            run.checkpoints
                .iter()
                .find(|(i, _)| i + start == *index)
                .map(|(_, md5)| md5.encode())
        };
        if let Some(state) = state {
            fresh.push(Checkpoint {
                index: *index,
                prefix_key,
                state,
            });
        }
    }
    if fresh != stored {
        cache.store_checkpoints(&stream, &fresh);
    }
    Ok(Outcome {
        digest,
        from_cache: false,
        resumed_at: (start > 0).then_some(start),
        stats: run.stats,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(size: u64) -> SourceFile {
        SourceFile {
            relative: String::new(),
            absolute: Default::default(),
            size,
        }
    }

    #[test]
    fn plan_marks_each_crossing_once() {
        let m = CHECKPOINT_EVERY;
        let files: Vec<SourceFile> = [m / 2, m / 2, 1, 3 * m, 0, m - 1, 1]
            .into_iter()
            .map(file)
            .collect();
        // totals: m/2, m, m+1, 4m+1, 4m+1, 5m, 5m+1
        assert_eq!(checkpoint_plan(&files), [1, 3, 5]);
        assert!(checkpoint_plan(&[file(1), file(2)]).is_empty());
    }
}
