//! The blocking side of a push from an export: reading the tar as it arrives, and gzipping each layer the
//! registry lacks into an upload that runs on the async side meanwhile.

use std::collections::{HashMap, HashSet};

use berth_core::engine::ProgressEvent;
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use bytes::Bytes;

use super::archive::{self, Entry, LayerName, StreamReader};
use super::memory::Memory;
use super::{gzip, incomplete, LocalImage, Stored, MAX_CONFIG_BYTES};
use crate::client::RegistryClient;

/// What reading the export found.
pub(super) struct Walked {
    pub(super) uploaded: HashMap<String, Stored>,
    pub(super) config: Option<Bytes>,
    pub(super) manifest: Vec<String>,
}

/// The blocking side of `RegistryClient::walk`.
#[derive(Clone)]
pub(super) struct Walk {
    pub(super) client: RegistryClient,
    pub(super) image: ImageRef,
    pub(super) local: LocalImage,
    pub(super) memory: Memory,
    /// Layers not to upload: the registry has them, or this walk uploaded them already.
    pub(super) skip: HashSet<String>,
    pub(super) threads: usize,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) events: tokio::sync::mpsc::UnboundedSender<ProgressEvent>,
    /// The error for a layer that reads as another diff id than the image names (`why` says which).
    pub(super) mismatch: fn(&ImageRef, String) -> Error,
}

impl Walk {
    pub(super) fn run(mut self, reader: StreamReader) -> Result<Walked> {
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
                    let label = match (&known, &name) {
                        (Some(diff_id), _) => diff_id.clone(),
                        (None, LayerName::Folder(folder)) => format!("layer {folder}"),
                        (None, LayerName::DiffId(diff_id)) => diff_id.clone(),
                    };
                    let (diff_id, blob) = self.upload(&mut entry, known.as_deref(), label)?;
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
                            return Err(incomplete(
                                &self.image,
                                "its config does not match the image id".into(),
                            ));
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
    pub(super) fn upload(
        &self,
        entry: &mut dyn std::io::Read,
        expected: Option<&str>,
        label: String,
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
        let id = label;
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
                    return Err((self.mismatch)(
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
                    Err(Error::new(
                        ErrorKind::Io,
                        format!("pushing {}: the upload ended early", self.image),
                    ))
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
