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

use std::collections::{HashMap, HashSet};
use std::path::Path;

use berth_core::engine::{ExportStream, Progress, ProgressEvent};
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::client::RegistryClient;
use crate::manifest::DOCKER_MANIFEST;
use archive::{Entry, LayerName, StreamReader};
use memory::Memory;

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
        let repository = format!("{}/{}", image.registry, image.repository);
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
        let mut layers = Vec::with_capacity(local.diff_ids.len());
        for diff_id in &local.diff_ids {
            let blob = stored.get(diff_id).ok_or_else(|| {
                incomplete(image, format!("layer {diff_id} is not in it"))
            })?;
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
            for from in made.repositories.iter().filter_map(|r| r.strip_prefix(&prefix)) {
                if there || from == image.repository {
                    continue;
                }
                there = self.mount_blob(image, from, &made.digest).await.unwrap_or(false);
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
        let (events, mut received) = tokio::sync::mpsc::unbounded_channel();
        let walk = Walk {
            client: self.clone(),
            image: image.clone(),
            local: local.clone(),
            memory: memory.clone(),
            skip: stored.keys().cloned().collect(),
            threads,
            runtime: tokio::runtime::Handle::current(),
            events,
        };
        let reader = StreamReader::spawn(stream);
        let task = tokio::task::spawn_blocking(move || walk.run(reader));
        // the blocking walk reports through the channel; it closes when the walk ends
        while let Some(event) = received.recv().await {
            progress.event(event);
        }
        task.await.map_err(|e| {
            Error::new(ErrorKind::Io, format!("pushing {image}: the export reader failed: {e}"))
        })?
    }
}

/// What reading the export found.
struct Walked {
    uploaded: HashMap<String, Stored>,
    config: Option<Bytes>,
    manifest: Vec<String>,
}

/// The blocking side of [`RegistryClient::walk`].
struct Walk {
    client: RegistryClient,
    image: ImageRef,
    local: LocalImage,
    memory: Memory,
    /// Layers not to upload: the registry has them, or this walk uploaded them already.
    skip: HashSet<String>,
    threads: usize,
    runtime: tokio::runtime::Handle,
    events: tokio::sync::mpsc::UnboundedSender<ProgressEvent>,
}

impl Walk {
    fn run(mut self, reader: StreamReader) -> Result<Walked> {
        let layers: HashSet<String> = self.local.diff_ids.iter().cloned().collect();
        let mut walked = Walked {
            uploaded: HashMap::new(),
            config: None,
            manifest: Vec::new(),
        };
        let mut tar = tar::Archive::new(reader);
        let entries = tar.entries().map_err(|e| self.read_error(e))?;
        for entry in entries {
            let mut entry = entry.map_err(|e| self.read_error(e))?;
            if entry.header().entry_type() != tar::EntryType::Regular {
                continue;
            }
            let path = entry.path().map_err(|e| self.read_error(e))?;
            let kind = archive::classify(&path.to_string_lossy(), &self.local.id, &layers);
            match kind {
                Entry::Layer(name) => {
                    let known = match &name {
                        LayerName::DiffId(d) => Some(d.clone()),
                        LayerName::Folder(folder) => self.memory.folder(folder),
                    };
                    if known.as_ref().is_some_and(|d| self.skip.contains(d)) {
                        continue;
                    }
                    let (diff_id, blob) = self.upload(&mut entry, known.as_deref())?;
                    if let LayerName::Folder(folder) = &name {
                        self.memory.remember_folder(folder, &diff_id);
                    }
                    let repository = format!("{}/{}", self.image.registry, self.image.repository);
                    self.memory
                        .remember_layer(&diff_id, &blob.digest, blob.size, &repository);
                    self.skip.insert(diff_id.clone());
                    walked.uploaded.insert(diff_id, blob);
                }
                Entry::Config | Entry::Manifest => {
                    if entry.size() > MAX_CONFIG_BYTES {
                        return Err(incomplete(&self.image, "its config is too large".into()));
                    }
                    let mut data = Vec::new();
                    std::io::Read::read_to_end(&mut entry, &mut data)
                        .map_err(|e| self.read_error(e))?;
                    if kind == Entry::Config {
                        if crate::sha256_digest(&data) != self.local.id {
                            return Err(incomplete(&self.image, "its config does not match the image id".into()));
                        }
                        walked.config = Some(Bytes::from(data));
                    } else {
                        walked.manifest = archive::manifest_layers(&data);
                    }
                }
                Entry::Other => {}
            }
        }
        Ok(walked)
    }

    /// Compresses `entry` while uploading it; its diff id (checked against `expected`) and the blob.
    fn upload(
        &self,
        entry: &mut dyn std::io::Read,
        expected: Option<&str>,
    ) -> Result<(String, Stored)> {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Result<Bytes>>(4);
        let (digest_tx, digest_rx) = tokio::sync::oneshot::channel::<String>();
        let body = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        let client = self.client.clone();
        let image = self.image.clone();
        let what = expected.unwrap_or("a layer").to_string();
        let upload = self.runtime.spawn(async move {
            let digest = async move {
                digest_rx.await.map_err(|_| {
                    Error::new(ErrorKind::Io, "the layer could not be read to its end")
                })
            };
            client.push_blob_streamed(&image, &what, body, digest).await
        });
        let id = expected.unwrap_or("layer").to_string();
        let mut sent = 0u64;
        let events = self.events.clone();
        let compressed = gzip::compress(entry, self.threads, &mut |chunk| {
            sent += chunk.len() as u64;
            let _ = events.send(ProgressEvent::Transfer {
                id: id.clone(),
                current: sent,
                total: None,
            });
            tx.blocking_send(Ok(chunk)).is_ok()
        });
        let finish = |upload: tokio::task::JoinHandle<Result<()>>| {
            self.runtime
                .block_on(upload)
                .map_err(|e| Error::new(ErrorKind::Io, format!("pushing {}: {e}", self.image)))
        };
        match compressed {
            Ok(found) => {
                if let Some(expected) = expected.filter(|e| *e != found.diff_id) {
                    drop(tx);
                    drop(digest_tx);
                    let _ = finish(upload);
                    return Err(incomplete(
                        &self.image,
                        format!("layer {expected} reads as {}", found.diff_id),
                    ));
                }
                drop(tx);
                let _ = digest_tx.send(found.digest.clone());
                finish(upload)??;
                Ok((
                    found.diff_id,
                    Stored {
                        digest: found.digest,
                        size: found.size,
                    },
                ))
            }
            Err(gzip::Stop::Read(e)) => {
                let error = self.read_error(e);
                let _ = tx.blocking_send(Err(Error::new(ErrorKind::Io, "the export stopped")));
                drop(tx);
                drop(digest_tx);
                let _ = finish(upload);
                Err(error)
            }
            Err(gzip::Stop::Output) => {
                drop(tx);
                drop(digest_tx);
                // the upload ended first: its error says why
                finish(upload)?.and_then(|()| {
                    Err(Error::new(ErrorKind::Io, format!("pushing {}: the upload ended early", self.image)))
                })
            }
        }
    }

    /// An error reading the export: the engine's own when it failed, else a broken archive.
    fn read_error(&self, e: std::io::Error) -> Error {
        match archive::engine_error(e) {
            Ok(engine) => engine,
            Err(e) => incomplete(&self.image, format!("it cannot be read: {e}")),
        }
    }
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
