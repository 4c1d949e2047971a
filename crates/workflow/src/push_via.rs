//! Who pushes an image: berth's registry client from the engine's storage or its export (Docker, Podman), or
//! the engine.
//!
//! berth's own push compresses layers on every core and reuses what it compressed before (see
//! `berth_registry::RegistryClient::push_exported`). It reads the image from the engine's storage when the
//! engine runs on this machine and berth may read it (`push_stored`, checked against the image's digests),
//! and from the export otherwise, saying why in a verbose line; the engine's push stays for registries only the daemon is
//! set up for (`--push-via engine`). containerd's backend pushes through berth's client either way.

use berth_core::engine::{
    ContainerEngine, Progress, ProgressEvent, PushedImage, RegistryAccess, TransferOptions,
};
use berth_core::reference::ImageRef;
use berth_core::{Error, ErrorKind, Result};
use berth_registry::{LocalImage, READ_STORAGE};

use crate::Registries;

/// Who pushes images built on an engine whose daemon reaches registries itself (Docker, Podman). Engines that
/// reach registries with berth's client (containerd, LXD) push through it either way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PushVia {
    /// berth's registry client, from the engine's storage when the engine runs on this machine and berth may
    /// read it there, else from the engine's image export.
    #[default]
    Berth,
    /// berth's registry client, from the engine's image export only (for a store berth should not read).
    Export,
    /// The engine's own push (`docker push`, `podman push`).
    Engine,
}

/// Pushes local image `reference` the way `registries.push_via` says.
pub async fn push(
    engine: &dyn ContainerEngine,
    registries: &Registries,
    reference: &str,
    transfer: &TransferOptions,
    progress: &dyn Progress,
) -> Result<PushedImage> {
    if registries.push_via == PushVia::Engine
        || engine.info().await?.capabilities.registries == RegistryAccess::Berth
    {
        return engine.push(reference, transfer, progress).await;
    }
    let image = ImageRef::parse(reference)?;
    let details = engine.inspect(reference).await?;
    let local = LocalImage {
        id: details.id,
        diff_ids: details.layers,
    };
    let memory = registries.pushed_record.as_deref();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    // the engine's storage on this machine first: no export to wait for
    let store = match registries.push_via {
        PushVia::Export => Err(Error::unsupported(
            engine.name(),
            READ_STORAGE,
            "--push-via export",
        )),
        _ => engine.image_store().await,
    };
    let from_store = match store {
        Ok(store) => {
            registries
                .client
                .push_stored(&image, &local, memory, threads, &store, progress)
                .await
        }
        // whatever keeps berth from the store (a remote engine, an unanswered info), the export remains
        Err(e) => Err(e.with_operation(READ_STORAGE)),
    };
    match from_store {
        Ok(digest) => {
            progress.event(ProgressEvent::Line(format!(
                "pushed {image} from {}'s storage",
                engine.name()
            )));
            return Ok(PushedImage { digest });
        }
        Err(e) if e.operation() == Some(READ_STORAGE) => progress.event(ProgressEvent::Line(
            format!("pushing from {}'s export: {}", engine.name(), e.message()),
        )),
        Err(e) => return Err(e),
    }
    let pushed = registries
        .client
        .push_exported(
            &image,
            &local,
            memory,
            threads,
            || engine.export(reference),
            progress,
        )
        .await;
    match pushed {
        Ok(digest) => Ok(PushedImage { digest }),
        // an engine that cannot export still pushes
        Err(e) if e.kind() == ErrorKind::Unsupported && e.operation() == Some("export") => {
            engine.push(reference, transfer, progress).await
        }
        Err(e) => Err(e),
    }
}
