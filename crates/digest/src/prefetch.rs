//! Read-ahead of upcoming files into the page cache.
//!
//! The hashing stream must be read in order, and one thread reading one file
//! at a time leaves a disk (especially a virtual or network one) mostly idle
//! on a cold cache. Prefetch threads read the next files, at most [`WINDOW`]
//! bytes ahead of the ordered reader, and throw the bytes away: the ordered
//! reader then finds them in the page cache. On a warm cache this costs one
//! extra memory copy per byte on the otherwise idle second core.

use std::fs::File;
use std::io::Read;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Scope;
use std::time::Duration;

use crate::hash::Job;

/// How far (in bytes) prefetching may run ahead of the ordered reader.
const WINDOW: u64 = 64 * 1024 * 1024;
/// Prefetch read size.
const CHUNK: usize = 256 * 1024;

/// Shared between the ordered reader and the prefetchers.
#[derive(Debug, Default)]
pub(crate) struct Progress {
    /// Number of jobs the ordered reader has finished.
    done: AtomicUsize,
    /// Set when the ordered reader stops (finished or failed).
    finished: AtomicBool,
    /// Next job index a prefetcher will take.
    next: AtomicUsize,
}

impl Progress {
    /// Records that the ordered reader finished job `index`.
    pub(crate) fn finished_job(&self, index: usize) {
        self.done.store(index + 1, Ordering::Release);
    }

    /// A guard that tells the prefetchers to stop when dropped (also on
    /// panic, so a scope never waits for prefetchers that wait forever).
    pub(crate) fn stop_on_drop(&self) -> StopOnDrop<'_> {
        StopOnDrop(self)
    }
}

/// See [`Progress::stop_on_drop`].
pub(crate) struct StopOnDrop<'a>(&'a Progress);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.finished.store(true, Ordering::Release);
    }
}

/// Number of prefetch threads to use (0 disables), from
/// `BERTH_DIGEST_PREFETCH` (default 2).
pub(crate) fn threads() -> usize {
    std::env::var("BERTH_DIGEST_PREFETCH")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2)
}

/// Starts `count` prefetch threads in `scope`.
pub(crate) fn spawn<'scope, 'env>(
    scope: &'scope Scope<'scope, 'env>,
    jobs: &'env [Job],
    progress: &'env Progress,
    count: usize,
) {
    if count == 0 || jobs.len() < 2 {
        return;
    }
    let offsets: std::sync::Arc<Vec<u64>> = std::sync::Arc::new(
        jobs.iter()
            .scan(0u64, |acc, j| {
                let start = *acc;
                *acc += j.size;
                Some(start)
            })
            .collect(),
    );
    for _ in 0..count {
        let offsets = offsets.clone();
        let _ = std::thread::Builder::new()
            .name("berth-digest-prefetch".to_owned())
            .spawn_scoped(scope, move || prefetch_loop(jobs, &offsets, progress));
    }
}

fn prefetch_loop(jobs: &[Job], offsets: &[u64], progress: &Progress) {
    let mut buf = vec![0u8; CHUNK];
    loop {
        let i = progress.next.fetch_add(1, Ordering::Relaxed);
        if i >= jobs.len() {
            return;
        }
        // Wait until job `i` is inside the window (or already passed).
        loop {
            if progress.finished.load(Ordering::Acquire) {
                return;
            }
            let done = progress.done.load(Ordering::Acquire);
            if i < done || done >= jobs.len() {
                break;
            }
            if offsets[i] <= offsets[done] + WINDOW {
                break;
            }
            std::thread::sleep(Duration::from_micros(500));
        }
        if i < progress.done.load(Ordering::Acquire) {
            continue;
        }
        let Ok(mut file) = File::open(&jobs[i].path) else {
            continue;
        };
        // Errors are the ordered reader's business; just stop prefetching.
        while let Ok(n) = file.read(&mut buf) {
            if n == 0
                || progress.finished.load(Ordering::Relaxed)
                || i < progress.done.load(Ordering::Relaxed)
            {
                break;
            }
        }
    }
}
