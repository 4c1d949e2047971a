//! Uploading a stored image's layers several at a time, as `skopeo copy` and containerd's push do: one layer
//! at a time leaves the link idle while each upload starts, ends and is checked, and leaves one thread reading
//! files and hashing while the compressors wait on it. Each layer in flight has its own blocking thread (its
//! reader and sha256s) and its own gzip threads; the compression threads of all layers together never exceed
//! the cores berth was given, and the buffers of all layers together stay bounded ([`Budget`]), so memory is
//! that of a few streams whatever the image's size or the machine's cores. Each layer's gzip output depends on
//! its bytes only, and the manifest names the layers in the image's order, so the digest does not depend on
//! which layer ended first.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_core::engine::Progress;
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};

use super::super::memory::Memory;
use super::super::walk::Walk;
use super::super::{LocalImage, Stored};
use super::tarsplit::TarSplit;
use super::{unusable, LayerFiles};
use crate::client::RegistryClient;

/// Layers read, compressed and uploaded at once: as many as containerd's push sends blobs at once.
const LAYERS_AT_ONCE: usize = crate::BLOBS_AT_ONCE;

/// Compression threads in all at most, however many cores: the most gzip gives one layer.
const MAX_THREADS: usize = 12;

/// MiB the layers in flight may hold together: one layer on [`MAX_THREADS`] threads fits, so an image of one
/// large layer compresses as fast as before, and several layers share the same room.
const BUFFER_MIB: usize = 36;

/// About the MiB one layer holds on `threads` threads: gzip keeps two 1 MiB blocks per thread and two more in
/// flight, and the upload's queue holds four compressed blocks.
fn layer_mib(threads: usize) -> usize {
    2 * threads + 2 + 4
}

/// The compression threads and buffer room not given to a layer in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Budget {
    threads: usize,
    mib: usize,
}

impl Budget {
    fn new(threads: usize) -> Self {
        Budget {
            threads: threads.clamp(1, MAX_THREADS),
            mib: BUFFER_MIB,
        }
    }

    /// The threads the next layer gets when `open` layers could start now (slots free and layers waiting):
    /// a fair part of the free threads, so that the last layer left gets them all, or `None` when no thread
    /// or no room is free (a running layer gives its back when it ends).
    fn share(&self, open: usize) -> Option<usize> {
        let fair = self.threads.div_ceil(open.max(1));
        let fits = self.mib.checked_sub(layer_mib(0))? / 2;
        let threads = fair.min(fits);
        (threads > 0).then_some(threads)
    }

    fn take(&mut self, threads: usize) {
        self.threads -= threads;
        self.mib -= layer_mib(threads);
    }

    fn give(&mut self, threads: usize) {
        self.threads += threads;
        self.mib += layer_mib(threads);
    }
}

impl RegistryClient {
    /// Uploads each of `layers` not in `stored` (once, if the image names one twice), several at a time; the
    /// blobs uploaded by diff id. The first failure stops the other layers (their uploads end unfinished) and
    /// is returned once they have stopped, so no thread of this push outlives it; the layers that finished
    /// stay in the registry and in `memory`, and nothing names them.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn upload_layers(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        memory: &Memory,
        stored: &HashMap<String, Stored>,
        threads: usize,
        layers: Vec<LayerFiles>,
        progress: &dyn Progress,
    ) -> Result<HashMap<String, Stored>> {
        let (walk, mut events) = self.walker(image, local, memory, stored, 1, unusable);
        let mut seen: HashSet<String> = stored.keys().cloned().collect();
        let mut waiting: VecDeque<LayerFiles> = layers
            .into_iter()
            .filter(|l| seen.insert(l.diff_id.clone()))
            .collect();
        let stop = Arc::new(AtomicBool::new(false));
        let mut budget = Budget::new(threads);
        let mut running = tokio::task::JoinSet::new();
        let mut uploaded = HashMap::new();
        let mut failed: Option<Error> = None;
        loop {
            while failed.is_none() && running.len() < LAYERS_AT_ONCE {
                let open = (LAYERS_AT_ONCE - running.len()).min(waiting.len());
                let Some(share) = budget.share(open).filter(|_| open > 0) else {
                    break;
                };
                let Some(layer) = waiting.pop_front() else {
                    break;
                };
                budget.take(share);
                let mut walk = walk.clone();
                walk.threads = share;
                let stop = stop.clone();
                running.spawn_blocking(move || (share, upload_layer(&walk, &layer, &stop)));
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                Some(event) = events.recv() => progress.event(event),
                Some(ended) = running.join_next() => match ended {
                    Ok((share, Ok((diff_id, blob)))) => {
                        budget.give(share);
                        uploaded.insert(diff_id, blob);
                    }
                    Ok((share, Err(e))) => {
                        budget.give(share);
                        stop.store(true, Ordering::Relaxed);
                        failed.get_or_insert(e);
                    }
                    Err(e) => {
                        stop.store(true, Ordering::Relaxed);
                        failed.get_or_insert(Error::new(
                            ErrorKind::Io,
                            format!("pushing {image}: a layer's reader failed: {e}"),
                        ));
                    }
                },
            }
        }
        // the events the last layers sent before they ended
        while let Ok(event) = events.try_recv() {
            progress.event(event);
        }
        match failed {
            Some(e) => Err(e),
            None => Ok(uploaded),
        }
    }
}

/// Reads, compresses and uploads one layer on this (blocking) thread, checking its diff id before the upload
/// is closed, and remembers the blob. A failed upload starts over from the storage as [`crate::Again`] says
/// (while it fails temporarily; once after a token died while it was sent), unless another layer failed.
fn upload_layer(walk: &Walk, layer: &LayerFiles, stop: &AtomicBool) -> Result<(String, Stored)> {
    let mut again = crate::Again::new(walk.client.options().retry);
    let (diff_id, blob) = loop {
        let mut reader = Checked {
            inner: TarSplit::open(&layer.record, &layer.diff),
            image: &walk.image,
            stop,
        };
        match walk.upload(&mut reader, Some(&layer.diff_id), layer.diff_id.clone()) {
            Err(e) if !stop.load(Ordering::Relaxed) => match again.after(&e) {
                Some(wait) => std::thread::sleep(wait),
                None => return Err(e),
            },
            other => break other?,
        }
    };
    let repository = format!("{}/{}", walk.image.registry, walk.image.repository);
    walk.memory
        .remember_layer(&diff_id, &blob.digest, blob.size, &repository);
    Ok((diff_id, blob))
}

/// A layer's reader whose failures are [`super::READ_STORAGE`] errors (carried inside the I/O error, which
/// the walk takes out again), so that a file berth may not read sends the push to the export; it stops when
/// another layer of the push failed.
struct Checked<'a> {
    inner: std::io::Result<TarSplit>,
    image: &'a ImageRef,
    stop: &'a AtomicBool,
}

impl std::io::Read for Checked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let failed = |why: String| std::io::Error::other(unusable(self.image, why));
        if self.stop.load(Ordering::Relaxed) {
            // this error is never the push's: the first failure is
            return Err(failed("another layer failed".into()));
        }
        match &mut self.inner {
            Ok(reader) => reader
                .read(buf)
                .map_err(|e| failed(format!("a layer cannot be read: {e}"))),
            Err(e) => Err(failed(format!("a layer cannot be read: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Starts layers as `upload_layers` does while `waiting` are left, none ending; the threads each got.
    fn start(budget: &mut Budget, mut waiting: usize) -> Vec<usize> {
        let mut running = Vec::new();
        while running.len() < LAYERS_AT_ONCE && waiting > 0 {
            let open = (LAYERS_AT_ONCE - running.len()).min(waiting);
            let Some(share) = budget.share(open) else {
                break;
            };
            budget.take(share);
            running.push(share);
            waiting -= 1;
        }
        running
    }

    #[test]
    fn one_layer_gets_every_core() {
        for cores in [1, 2, 8, MAX_THREADS] {
            assert_eq!(start(&mut Budget::new(cores), 1), [cores]);
        }
    }

    #[test]
    fn layers_share_the_cores_and_never_exceed_them() {
        assert_eq!(start(&mut Budget::new(2), 27), [1, 1]);
        assert_eq!(start(&mut Budget::new(4), 27), [1, 1, 1, 1]);
        assert_eq!(start(&mut Budget::new(8), 3), [3, 3, 2]);
        for cores in 1..100 {
            for waiting in 1..30 {
                let running = start(&mut Budget::new(cores), waiting);
                assert!(!running.is_empty(), "{cores} cores, {waiting} layers");
                let threads: usize = running.iter().sum();
                assert!(threads <= cores.min(MAX_THREADS), "{cores}: {running:?}");
                let mib: usize = running.iter().map(|&t| layer_mib(t)).sum();
                assert!(
                    mib <= BUFFER_MIB,
                    "{cores} cores: {running:?} hold {mib} MiB"
                );
            }
        }
    }

    #[test]
    fn an_ended_layer_gives_its_threads_to_the_next() {
        let mut budget = Budget::new(2);
        let running = start(&mut budget, 27);
        assert_eq!(budget.share(2), None);
        budget.give(running[0]);
        assert_eq!(budget.share(2), Some(1));
        budget.give(running[1]);
        assert_eq!(budget, Budget::new(2));
        // the last layer left gets every core
        assert_eq!(budget.share(1), Some(2));
    }
}
