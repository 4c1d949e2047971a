//! Pulling into berth's LXD store through berth's registry client: the manifest (the host platform's, from an
//! index), the config and each layer blob the store lacks, then the name. Blobs are streamed to a temporary
//! file (the registry client checks their digest at the end) and renamed into place.

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::reference::ImageRef;
use berth_core::{ErrorKind, Operation, Result};
use berth_registry::RegistryClient;
use futures_util::StreamExt as _;
use oci_spec::image::{ImageIndex, ImageManifest};
use serde_json::Value;
use tokio::io::AsyncWriteExt as _;

use crate::errors::{error, io_error};
use crate::store::{descriptor, LocalImage, Store};

/// `reference` with `:latest` when it names neither tag nor digest, as the store names images.
pub(crate) fn image_name(reference: &str, op: Operation) -> Result<String> {
    let image = ImageRef::parse(reference)
        .map_err(|e| e.with_engine(crate::ENGINE).with_operation(op.as_str()))?;
    let mut name = image.to_string();
    if image.tag.is_none() && image.digest.is_none() {
        name.push_str(":latest");
    }
    Ok(name)
}

/// The image `reference` names: from the store, else pulled.
pub(crate) async fn local_or_pull(
    store: &Store,
    registry: &RegistryClient,
    reference: &str,
    op: Operation,
    progress: &dyn Progress,
) -> Result<LocalImage> {
    let name = image_name(reference, op)?;
    if let Some(image) = store.image(&name, op)? {
        let complete = image
            .layers()
            .iter()
            .filter_map(|l| l["digest"].as_str())
            .try_fold(true, |all, d| {
                Ok::<_, berth_core::Error>(all && store.has_blob(d, op)?)
            })?;
        if complete {
            return Ok(image);
        }
    }
    pull(store, registry, reference, op, progress).await
}

/// Pulls `reference` into the store (always asking the registry) and names it.
pub(crate) async fn pull(
    store: &Store,
    registry: &RegistryClient,
    reference: &str,
    op: Operation,
    progress: &dyn Progress,
) -> Result<LocalImage> {
    let name = image_name(reference, op)?;
    let image = ImageRef::parse(&name).map_err(|e| e.with_engine(crate::ENGINE))?;
    progress.event(ProgressEvent::Line(format!("pulling {name}")));
    let refused = |e: berth_core::Error| {
        error(e.kind(), op, format!("{name}: {}", e.message()))
            .with_hint(berth_registry::pull_hint(&e))
            .with_source(e)
    };
    let mut manifest = registry.get_manifest(&image).await.map_err(refused)?;
    let invalid = |what: &str, e: &dyn std::fmt::Display| {
        error(
            ErrorKind::Protocol,
            op,
            format!("{name}: the registry's {what} is not valid: {e}"),
        )
    };
    let is_index = serde_json::from_slice::<Value>(&manifest.bytes)
        .map_err(|e| invalid("manifest", &e))?
        .get("manifests")
        .is_some();
    if is_index {
        let index: ImageIndex =
            serde_json::from_slice(&manifest.bytes).map_err(|e| invalid("image index", &e))?;
        let (os, arch) = ("linux", berth_core::platform::host_arch());
        let chosen = berth_layer::oci::for_platform(index.manifests(), os, arch)
            .ok_or_else(|| {
                error(
                    ErrorKind::NotFound,
                    op,
                    format!("{name} has no image for {os}/{arch}"),
                )
                .with_hint("use an image built for this machine's platform")
            })?
            .digest()
            .to_string();
        manifest = registry
            .get_manifest(&image.with_digest(&chosen))
            .await
            .map_err(refused)?;
    }
    // typed, so a layer without a digest or size is the registry's error, not a blob silently passed over
    let typed: ImageManifest =
        serde_json::from_slice(&manifest.bytes).map_err(|e| invalid("image manifest", &e))?;
    let source = format!("{}/{}", image.registry, image.repository);
    let blobs = typed.layers().iter().chain([typed.config()]);
    for blob in blobs {
        let digest = blob.digest().to_string();
        if !store.has_blob(&digest, op)? {
            fetch_blob(store, registry, &image, &digest, blob.size(), op, progress).await?;
        }
        store.add_source(&digest, &source);
    }
    let digest = store.put_bytes(&manifest.bytes, op)?;
    let d = descriptor(&manifest.media_type, &digest, manifest.bytes.len() as u64);
    store.set_ref(&name, &d, op)?;
    store.load(&digest, op)
}

/// Downloads one blob into the store, again from the start while it fails temporarily.
async fn fetch_blob(
    store: &Store,
    registry: &RegistryClient,
    image: &ImageRef,
    digest: &str,
    size: u64,
    op: Operation,
    progress: &dyn Progress,
) -> Result<()> {
    let total = Some(size);
    store.blob_path(digest, op)?; // validates the digest before it names a file
    let tmp = store.tmp_file(digest.trim_start_matches("sha256:"));
    let policy = registry.options().retry;
    let mut attempt = 1;
    loop {
        let result = async {
            let mut stream = registry.get_blob(image, digest).await?;
            let mut file = tokio::fs::File::create(&tmp)
                .await
                .map_err(|e| io_error(op, tmp.display(), e))?;
            let mut current = 0u64;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk?;
                current += chunk.len() as u64;
                file.write_all(&chunk)
                    .await
                    .map_err(|e| io_error(op, tmp.display(), e))?;
                progress.event(ProgressEvent::Transfer {
                    id: digest.to_string(),
                    current,
                    total,
                });
            }
            file.sync_all()
                .await
                .map_err(|e| io_error(op, tmp.display(), e))
        }
        .await;
        match result {
            Ok(()) => return store.put_file(&tmp, digest, op),
            Err(e) if e.kind() == ErrorKind::Unavailable && attempt < policy.max_attempts => {
                tokio::time::sleep(policy.delay(attempt, None)).await;
                attempt += 1;
            }
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
        }
    }
}
