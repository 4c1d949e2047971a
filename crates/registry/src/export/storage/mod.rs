//! Pushing an image read straight from its engine's storage on this machine, as skopeo's
//! `containers-storage:` transport does: no export to wait for (libpod 4.3 and dockerd 20.10 write the whole
//! archive to a temporary file before sending a byte of it).
//!
//! Each layer the registry lacks is rebuilt from its tar-split record and its files ([`tarsplit`]), gzipped
//! while it uploads as an exported one is, several layers at once sharing the cores ([`layers`]), and its
//! sha256 is checked against the diff id the image names before its upload is closed; the config is checked against the image id. The manifest goes last, so
//! a layer that reads wrong leaves no image named. Anything berth cannot read or check is an error whose
//! operation is [`READ_STORAGE`], and the caller pushes from the export instead.

mod containers;
mod docker;
mod layers;
mod lock;
mod tarsplit;

use std::path::{Path, PathBuf};

use berth_core::engine::{ImageStore, Progress};
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use bytes::Bytes;

use super::memory::Memory;
use super::LocalImage;
use crate::client::RegistryClient;

/// The operation of every error that means "push from the export instead": the storage could not be read
/// or did not hold the image as the engine describes it. Nothing of the image was named in the registry.
pub const READ_STORAGE: &str = "read storage";

/// Why the store cannot give the image (said in the error, and in the verbose line of the fallback).
pub(crate) struct Unusable(pub(crate) String);

impl Unusable {
    fn io(path: &Path, e: std::io::Error) -> Unusable {
        Unusable(format!("{}: {e}", path.display()))
    }
}

/// Where one layer is kept.
pub(crate) struct LayerFiles {
    pub(crate) diff_id: String,
    /// Its tar-split record.
    pub(crate) record: PathBuf,
    /// Its unpacked files.
    pub(crate) diff: PathBuf,
}

/// An image found in a store.
pub(crate) struct StoredImage {
    pub(crate) config: Bytes,
    /// Base first.
    pub(crate) layers: Vec<LayerFiles>,
}

impl RegistryClient {
    /// Pushes `local` to `image` from the engine's storage `store`, and returns the manifest digest; the same
    /// digest [`RegistryClient::push_exported`] gives for the same image. An error whose operation is
    /// [`READ_STORAGE`] means the store could not give the image as the engine describes it: push from the
    /// export then.
    #[allow(clippy::too_many_arguments)]
    pub async fn push_stored(
        &self,
        image: &ImageRef,
        local: &LocalImage,
        memory: Option<&Path>,
        threads: usize,
        store: &ImageStore,
        progress: &dyn Progress,
    ) -> Result<String> {
        let memory = Memory::new(memory);
        let opened = {
            let (store, id) = (store.clone(), local.id.clone());
            tokio::task::spawn_blocking(move || open(&store, &id))
                .await
                .map_err(|e| unusable(image, format!("{e}")))?
        };
        let stored_image = opened.map_err(|why| unusable(image, why.0))?;
        if crate::sha256_digest(&stored_image.config) != local.id {
            return Err(unusable(image, "its config is not the image id's".into()));
        }
        let found: Vec<&str> = stored_image
            .layers
            .iter()
            .map(|l| l.diff_id.as_str())
            .collect();
        if found != local.diff_ids {
            return Err(unusable(
                image,
                "its layers are not the ones the engine names".into(),
            ));
        }
        let mut stored = self.already_stored(image, local, &memory, progress).await?;
        let uploaded = self
            .upload_layers(
                image,
                local,
                &memory,
                &stored,
                threads,
                stored_image.layers,
                progress,
            )
            .await?;
        stored.extend(uploaded);
        let config = stored_image.config;
        if !self.blob_exists(image, &local.id).await? {
            let size = config.len() as u64;
            self.push_blob(image, &local.id, size, crate::bytes_stream(config.clone()))
                .await?;
        }
        memory.remember_config(&local.id, config.len() as u64);
        self.put_image_manifest(image, local, &stored, config.len() as u64, &memory)
            .await
    }
}

/// The image `id` in `store`.
fn open(store: &ImageStore, id: &str) -> std::result::Result<StoredImage, Unusable> {
    match store {
        ImageStore::ContainersStorage { root, driver } => containers::open(root, driver, id),
        ImageStore::Docker { root, driver } => docker::open(root, driver, id),
    }
}

/// A [`READ_STORAGE`] error: the store cannot give `image` (`why`).
fn unusable(image: &ImageRef, why: String) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!("berth cannot push {image} from the engine's storage: {why}"),
    )
    .with_operation(READ_STORAGE)
    .with_hint("berth pushes from the engine's export instead (slower); --push-via engine pushes with the engine")
}
