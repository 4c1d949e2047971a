//! Pushing from the content store through berth's registry client. Blobs the registry has are skipped; blobs
//! whose `containerd.io/distribution.source.<registry>` label names another repository of the same registry
//! are mounted from there; the rest are streamed from the content store, several at once
//! ([`berth_registry::send_blobs`]). The config and then the manifest go last, so a failed push never leaves a
//! tag pointing at missing blobs. Pushed blobs get the repository added to their source label, so the next push
//! of an image sharing them can mount instead of upload.

use std::collections::HashMap;

use berth_core::engine::{Progress, ProgressEvent, PushedImage, TransferOptions};
use berth_core::reference::ImageRef;
use berth_core::{ErrorKind, Result};
use berth_registry::{send_blobs, ImageBlob, RegistryClient};

use crate::convert::{Daemon, Descriptor};
use crate::errors::{error, Op};
use crate::images::{image_name, load, not_found};
use crate::labels::distribution_source;
use crate::ContainerdEngine;

/// How many of a blob's source repositories a push tries to mount from before it uploads the blob: each failed
/// mount is a round trip, and a blob pushed to many repositories names many.
const MOUNT_ATTEMPTS: usize = 3;

pub(crate) async fn push(
    engine: &ContainerdEngine,
    reference: &str,
    options: &TransferOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    let op = Op::Push;
    let name = image_name(reference, op)?;
    let image = ImageRef::parse(&name).map_err(|e| e.with_engine(crate::ENGINE))?;
    let daemon = &engine.daemon;
    let record = daemon
        .get_image(&name, op)
        .await?
        .ok_or_else(|| not_found(engine, &name, op))?;
    // an index pulled from elsewhere is pushed as the host platform's manifest
    let local = load(daemon, &record.target, &name, op).await?;
    let registry = engine.registry_client(
        options.credentials.iter().cloned(),
        &crate::insecure_host(options, reference),
    )?;
    let layers: Vec<ImageBlob> = local.layers().iter().map(image_blob).collect();
    send_blobs(&layers, &image_blob(&local.config), |blob| {
        let (registry, image) = (&registry, &image);
        async move { send_blob(daemon, registry, image, &blob, op, progress).await }
    })
    .await?;
    let manifest = daemon.read_all(&local.manifest.digest, op).await?;
    let digest = registry
        .put_manifest(&image, &local.manifest.media_type, &manifest)
        .await
        .map_err(|e| with_push_hint(e, &name))?;
    add_source(daemon, &image, &local.manifest.digest, op).await?;
    Ok(PushedImage { digest })
}

fn image_blob(descriptor: &Descriptor) -> ImageBlob {
    ImageBlob {
        digest: descriptor.digest.clone(),
        size: descriptor.size.max(0) as u64,
    }
}

/// Makes `blob` present in `image`'s repository: already there, mounted, or uploaded.
async fn send_blob(
    daemon: &Daemon,
    registry: &RegistryClient,
    image: &ImageRef,
    blob: &ImageBlob,
    op: Op,
    progress: &dyn Progress,
) -> Result<()> {
    let total = blob.size;
    let done = |progress: &dyn Progress| {
        progress.event(ProgressEvent::Transfer {
            id: blob.digest.clone(),
            current: total,
            total: Some(total),
        });
    };
    let name = image.to_string();
    if registry
        .blob_exists(image, &blob.digest)
        .await
        .map_err(|e| with_push_hint(e, &name))?
    {
        done(progress);
        return Ok(());
    }
    let labels = daemon
        .content_labels(&blob.digest, op)
        .await?
        .ok_or_else(|| {
            error(
                ErrorKind::NotFound,
                op,
                format!("{name}: blob {} is not in the content store", blob.digest),
            )
            .with_hint("build or pull the image again; its content was removed")
        })?;
    let sources: Vec<&str> = labels
        .get(&distribution_source(&image.registry))
        .map(|repos| {
            // The newest first: an older repository is likelier to have been deleted.
            repos
                .rsplit(',')
                .filter(|r| *r != image.repository)
                .take(MOUNT_ATTEMPTS)
                .collect()
        })
        .unwrap_or_default();
    for repository in sources {
        if registry
            .mount_blob(image, repository, &blob.digest)
            .await
            .unwrap_or(false)
        {
            progress.event(ProgressEvent::Line(format!(
                "mounted {} from {repository}",
                blob.digest
            )));
            done(progress);
            return add_source(daemon, image, &blob.digest, op).await;
        }
    }
    progress.event(ProgressEvent::Transfer {
        id: blob.digest.clone(),
        current: 0,
        total: Some(total),
    });
    upload(daemon, registry, image, blob, op)
        .await
        .map_err(|e| with_push_hint(e, &name))?;
    done(progress);
    add_source(daemon, image, &blob.digest, op).await
}

/// Uploads `blob` from the content store, reading it afresh for each try ([`RegistryClient::push_blob_from`]).
async fn upload(
    daemon: &Daemon,
    registry: &RegistryClient,
    image: &ImageRef,
    blob: &ImageBlob,
    op: Op,
) -> Result<()> {
    registry
        .push_blob_from(image, &blob.digest, blob.size, || {
            daemon.read_blob(&blob.digest, op)
        })
        .await
}

/// Adds `image`'s repository to the blob's distribution-source label.
async fn add_source(daemon: &Daemon, image: &ImageRef, digest: &str, op: Op) -> Result<()> {
    let label = (
        distribution_source(&image.registry),
        image.repository.clone(),
    );
    daemon
        .add_content_labels(digest, &HashMap::from([label]), op)
        .await
}

fn with_push_hint(e: berth_core::Error, name: &str) -> berth_core::Error {
    let hint = match e.kind() {
        // The registry client's hint fits where the refused credentials came from.
        ErrorKind::Unauthorized => e
            .hint()
            .unwrap_or("log in for this registry, with push rights"),
        ErrorKind::Unavailable => "the registry failed for a while; push again",
        _ => "check the registry address and that the repository accepts pushes",
    };
    let kind = e.kind();
    error(kind, Op::Push, format!("{name}: {}", e.message()))
        .with_hint(hint.to_string())
        .with_source(e)
}
