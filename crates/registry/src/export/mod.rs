//! Pushing an image that an engine exports (Docker's and Podman's), with berth's client instead of the
//! engine's: layers are compressed on every core while they upload, where dockerd compresses on one.
//!
//! The engine's export (`docker save`'s layout: uncompressed layers, the config, `manifest.json`) is read once,
//! as it arrives, and never kept: each layer the registry lacks is gzipped in parallel ([`gzip`], whose output
//! depends only on the layer, so a second push of the same image gives the same manifest) and streamed into
//! an upload whose digest is named when it ends. What berth compressed before ([`memory`]) is asked about
//! first: blobs the registry has are skipped, blobs in another repository of the registry are mounted, and
//! an image the registry has whole is pushed without exporting it. The manifest goes last. A failure leaves
//! what was uploaded in place, so pushing again resumes.

mod archive;
mod gzip;
mod memory;
mod storage;
mod walk;

use std::collections::HashMap;
use std::path::Path;

use berth_core::engine::{ExportStream, Progress, ProgressEvent};
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use serde::Serialize;

use crate::client::RegistryClient;
use crate::manifest::DOCKER_MANIFEST;
use archive::StreamReader;
use memory::Memory;
pub use storage::READ_STORAGE;
use walk::{Walk, Walked};

/// Docker's media types, as `docker push` writes them (every engine pulls them).
const CONFIG_TYPE: &str = "application/vnd.docker.container.image.v1+json";
const LAYER_TYPE: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// The largest config berth reads from an export (configs are kilobytes).
const MAX_CONFIG_BYTES: u64 = 16 << 20;

/// The local image to push, as its engine describes it.
#[derive(Debug, Clone)]
pub struct LocalImage {
    /// The image id: its config's digest (`sha256:...`).
    pub id: String,
    /// Its layers' diff ids, base first.
    pub diff_ids: Vec<String>,
}

/// A blob in the registry.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    digest: String,
    size: u64,
}

impl RegistryClient {
    /// Pushes `local` to `image` (which names a tag) from the stream `export` opens, and returns the manifest
    /// digest. `memory` is a folder of berth's cache where it keeps what it compressed (see the module doc);
    /// `None` pushes without remembering. `threads` compress at once (the machine's cores, usually).
    pub async fn push_exported<F, Fut>(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        memory: Option<&Path>,
        threads: usize,
        export: F,
        progress: &dyn Progress,
    ) -> Result<String>
    where
        F: FnOnce() -> Fut,
        Fut: std::future::Future<Output = Result<ExportStream>>,
    {
        let memory = Memory::new(memory);
        let mut stored = self.already_stored(image, local, &memory, progress).await?;
        let config_size = match memory.config_size(&local.id) {
            Some(size) if self.blob_exists(image, &local.id).await? => Some(size),
            _ => None,
        };
        let all_there = local.diff_ids.iter().all(|d| stored.contains_key(d));
        let config_size = match config_size {
            Some(size) if all_there => size,
            _ => {
                let stream = export().await?;
                let walked = self
                    .walk(image, local, &memory, &stored, threads, stream, progress)
                    .await?;
                stored.extend(walked.uploaded);
                let config = walked.config.ok_or_else(|| {
                    incomplete(image, format!("the config {} is not in it", local.id))
                })?;
                if !self.blob_exists(image, &local.id).await? {
                    let size = config.len() as u64;
                    self.push_blob(image, &local.id, size, crate::bytes_stream(config.clone()))
                        .await?;
                }
                remember_folders(&memory, local, &walked.manifest);
                memory.remember_config(&local.id, config.len() as u64);
                config.len() as u64
            }
        };
        self.put_image_manifest(image, local, &stored, config_size, &memory)
            .await
    }

    /// Writes the manifest of `local`, all of whose layers are `stored`, and remembers them: the last step of
    /// every push, so an image is never named before all its blobs are there.
    async fn put_image_manifest(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        stored: &HashMap<String, Stored>,
        config_size: u64,
        memory: &Memory,
    ) -> Result<String> {
        let repository = format!("{}/{}", image.registry, image.repository);
        let mut layers = Vec::with_capacity(local.diff_ids.len());
        for diff_id in &local.diff_ids {
            let blob = stored
                .get(diff_id)
                .ok_or_else(|| incomplete(image, format!("layer {diff_id} is not in it")))?;
            memory.remember_layer(diff_id, &blob.digest, blob.size, &repository);
            layers.push(Descriptor::new(LAYER_TYPE, blob));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: DOCKER_MANIFEST,
            config: Descriptor::new(
                CONFIG_TYPE,
                &Stored {
                    digest: local.id.clone(),
                    size: config_size,
                },
            ),
            layers,
        };
        let bytes = serde_json::to_vec_pretty(&manifest)
            .map_err(|e| Error::new(ErrorKind::Protocol, format!("manifest: {e}")))?;
        self.put_manifest(image, DOCKER_MANIFEST, &bytes).await
    }

    /// The layers whose blobs berth made before and the registry has in `image`'s repository (mounting them
    /// there from another repository of the registry when it can).
    async fn already_stored(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        memory: &Memory,
        progress: &dyn Progress,
    ) -> Result<HashMap<String, Stored>> {
        let mut stored = HashMap::new();
        for diff_id in &local.diff_ids {
            let Some(made) = memory.layer(diff_id) else {
                continue;
            };
            let mut there = self.blob_exists(image, &made.digest).await?;
            let prefix = format!("{}/", image.registry);
            for from in made
                .repositories
                .iter()
                .filter_map(|r| r.strip_prefix(&prefix))
            {
                if there || from == image.repository {
                    continue;
                }
                there = self
                    .mount_blob(image, from, &made.digest)
                    .await
                    .unwrap_or(false);
                if there {
                    progress.event(ProgressEvent::Line(format!(
                        "mounted {} from {from}",
                        made.digest
                    )));
                }
            }
            if there {
                stored.insert(
                    diff_id.clone(),
                    Stored {
                        digest: made.digest,
                        size: made.size,
                    },
                );
            }
        }
        Ok(stored)
    }

    /// Reads the export once, uploading each layer not in `stored`; keeps the config and `manifest.json`.
    #[allow(clippy::too_many_arguments)]
    async fn walk(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        memory: &Memory,
        stored: &HashMap<String, Stored>,
        threads: usize,
        stream: ExportStream,
        progress: &dyn Progress,
    ) -> Result<Walked> {
        let reader = StreamReader::spawn(stream);
        let walk = self.walker(image, local, memory, stored, threads, incomplete);
        blocking(image, walk, progress, move |walk| walk.run(reader)).await
    }

    /// A [`Walk`] that skips the layers in `stored`; `mismatch` is its error for a layer that reads wrong.
    fn walker(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        memory: &Memory,
        stored: &HashMap<String, Stored>,
        threads: usize,
        mismatch: fn(&ImageRef, String) -> Error,
    ) -> (Walk, tokio::sync::mpsc::UnboundedReceiver<ProgressEvent>) {
        let (events, received) = tokio::sync::mpsc::unbounded_channel();
        let walk = Walk {
            client: self.clone(),
            image: image.clone(),
            local: local.clone(),
            memory: memory.clone(),
            skip: stored.keys().cloned().collect(),
            threads,
            runtime: tokio::runtime::Handle::current(),
            events,
            mismatch,
        };
        (walk, received)
    }
}

/// Runs `work` with the walk on a blocking thread (it compresses and reads files), reporting its progress
/// events until it ends.
async fn blocking<T: Send + 'static>(
    image: &ImageRef,
    (walk, mut received): (Walk, tokio::sync::mpsc::UnboundedReceiver<ProgressEvent>),
    progress: &dyn Progress,
    work: impl FnOnce(Walk) -> Result<T> + Send + 'static,
) -> Result<T> {
    let task = tokio::task::spawn_blocking(move || work(walk));
    // the blocking walk reports through the channel; it closes when the walk ends
    while let Some(event) = received.recv().await {
        progress.event(event);
    }
    task.await.map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("pushing {image}: the layer reader failed: {e}"),
        )
    })?
}

/// Remembers which save folder held which layer, from `manifest.json`'s order, for the next push.
fn remember_folders(memory: &Memory, local: &LocalImage, manifest: &[String]) {
    if manifest.len() != local.diff_ids.len() {
        return;
    }
    for (path, diff_id) in manifest.iter().zip(&local.diff_ids) {
        if let Some(folder) = path.strip_suffix("/layer.tar") {
            memory.remember_folder(folder, diff_id);
        }
    }
}

fn incomplete(image: &ImageRef, why: String) -> Error {
    Error::new(
        ErrorKind::Protocol,
        format!("the engine's export of {image} is not what berth can push: {why}"),
    )
    .with_operation("push")
    .with_hint("push with the engine instead: --push-via engine")
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    media_type: &'static str,
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    media_type: &'static str,
    size: u64,
    digest: String,
}

impl Descriptor {
    fn new(media_type: &'static str, blob: &Stored) -> Self {
        Descriptor {
            media_type,
            size: blob.size,
            digest: blob.digest.clone(),
        }
    }
}
