//! Pushing from berth's LXD store through berth's registry client: blobs the registry has are skipped, blobs the
//! store knows in another repository of the same registry are mounted from there, the rest are streamed from
//! their files, several at once ([`berth_registry::send_blobs`]); the config and then the manifest go last, so
//! a failed push never leaves a tag naming missing blobs.

use berth_core::engine::{Progress, ProgressEvent, PushedImage};
use berth_core::reference::ImageRef;
use berth_core::{ErrorKind, Operation, Result};
use berth_registry::{send_blobs, ImageBlob, RegistryClient};
use tokio::io::AsyncReadExt as _;

use crate::errors::{error, io_error};
use crate::pull::image_name;
use crate::store::{LocalImage, Store};

const OP: Operation = Operation::Push;

/// Pushes the image the store names `reference`.
pub(crate) async fn push(
    store: &Store,
    registry: &RegistryClient,
    reference: &str,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    let name = image_name(reference, OP)?;
    let image = ImageRef::parse(&name).map_err(|e| e.with_engine(crate::ENGINE))?;
    let local = store
        .image(&name, OP)?
        .ok_or_else(|| crate::images::not_found(&name, OP))?;
    let (layers, config) = blobs(&local);
    send_blobs(&layers, &config, |blob| {
        let image = &image;
        async move { send_blob(store, registry, image, &blob, progress).await }
    })
    .await
    .map_err(|e| with_push_hint(e, &name))?;
    let manifest = store.read(&local.manifest_digest, OP)?;
    let digest = registry
        .put_manifest(&image, &local.manifest_media_type, &manifest)
        .await
        .map_err(|e| with_push_hint(e, &name))?;
    Ok(PushedImage { digest })
}

/// The layers and the config.
fn blobs(local: &LocalImage) -> (Vec<ImageBlob>, ImageBlob) {
    let layers = local
        .layers()
        .iter()
        .map(|l| ImageBlob {
            digest: l["digest"].as_str().unwrap_or_default().to_string(),
            size: l["size"].as_u64().unwrap_or(0),
        })
        .collect();
    let config = ImageBlob {
        digest: local.config_digest.clone(),
        size: local.manifest["config"]["size"].as_u64().unwrap_or(0),
    };
    (layers, config)
}

async fn send_blob(
    store: &Store,
    registry: &RegistryClient,
    image: &ImageRef,
    ImageBlob { digest, size }: &ImageBlob,
    progress: &dyn Progress,
) -> Result<()> {
    let here = format!("{}/{}", image.registry, image.repository);
    let done = || {
        progress.event(ProgressEvent::Transfer {
            id: digest.clone(),
            current: *size,
            total: Some(*size),
        })
    };
    if registry.blob_exists(image, digest).await? {
        store.add_source(digest, &here);
        done();
        return Ok(());
    }
    let prefix = format!("{}/", image.registry);
    for source in store.sources(digest) {
        let Some(repository) = source.strip_prefix(&prefix) else {
            continue;
        };
        if repository != image.repository
            && registry
                .mount_blob(image, repository, digest)
                .await
                .unwrap_or(false)
        {
            progress.event(ProgressEvent::Line(format!(
                "mounted {digest} from {repository}"
            )));
            store.add_source(digest, &here);
            done();
            return Ok(());
        }
    }
    let path = store.blob_path(digest, OP)?;
    // each try reads the file afresh: a stream cannot be sent again once started
    let open = || async {
        let file = tokio::fs::File::open(&path)
            .await
            .map_err(|e| io_error(OP, format!("blob {digest}"), e))?;
        Ok(file_chunks(file, digest.clone()))
    };
    registry.push_blob_from(image, digest, *size, open).await?;
    store.add_source(digest, &here);
    done();
    Ok(())
}

fn with_push_hint(e: berth_core::Error, name: &str) -> berth_core::Error {
    let kind = e.kind();
    let hint = match kind {
        ErrorKind::Unauthorized => e
            .hint()
            .unwrap_or("log in for this registry, with push rights"),
        ErrorKind::Unavailable => "the registry failed for a while; push again",
        ErrorKind::NotFound | ErrorKind::Io => e.hint().unwrap_or("build or pull the image again"),
        _ => "check the registry address and that the repository accepts pushes",
    };
    error(kind, OP, format!("{name}: {}", e.message()))
        .with_hint(hint.to_string())
        .with_source(e)
}

/// `file` in 1 MiB pieces, read failures naming blob `digest`.
fn file_chunks(
    file: tokio::fs::File,
    digest: String,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes>> + Send + 'static {
    futures_util::stream::unfold(file, move |mut file| {
        let what = digest.clone();
        async move {
            let mut buffer = vec![0u8; 1 << 20];
            match file.read(&mut buffer).await {
                Ok(0) => None,
                Ok(n) => {
                    buffer.truncate(n);
                    Some((Ok(bytes::Bytes::from(buffer)), file))
                }
                Err(e) => Some((Err(io_error(OP, format!("blob {what}"), e)), file)),
            }
        }
    })
}
