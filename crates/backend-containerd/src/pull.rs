//! Pulling: manifests and blobs through berth's registry client into the content store under a lease, with the
//! labels containerd's own pull sets (so `ctr`, `nerdctl` and the collector see a normal image), then unpacking
//! into the snapshotter by chain id and creating the image record.

use std::collections::HashMap;

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::reference::ImageRef;
use berth_core::{ErrorKind, Result};
use berth_registry::RegistryClient;

use crate::cleanup::Guard;
use crate::convert::{BlobStream, Daemon, Descriptor};
use crate::errors::{error, Op};
use crate::images::{self, image_name, is_index, LocalImage};
use crate::labels::{self, chain_id, distribution_source, unique_id};
use crate::ContainerdEngine;

/// A local image ready to build on: its record's target, its content, and the chain id of its top layer.
#[derive(Debug, Clone)]
pub(crate) struct Pulled {
    pub(crate) image: LocalImage,
    /// The chain id of the top layer (`None` for an image without layers).
    pub(crate) top: Option<String>,
}

/// Pulls `reference` (always asking the registry) and unpacks it.
pub(crate) async fn pull_image(
    engine: &ContainerdEngine,
    registry: &RegistryClient,
    reference: &str,
    op: Op,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let name = image_name(reference, op)?;
    let image = ImageRef::parse(&name).map_err(|e| e.with_engine(crate::ENGINE))?;
    let (guard, daemon) = Guard::lease(engine, "pull", op).await?;
    let result = fetch(&daemon, &guard, registry, &image, &name, op, progress).await;
    let finished = guard.finish().await;
    let pulled = result?;
    finished?;
    Ok(pulled)
}

/// A local image for `reference`: the one the namespace has, else pulled.
pub(crate) async fn local_or_pull(
    engine: &ContainerdEngine,
    registry: &RegistryClient,
    reference: &str,
    op: Op,
    progress: &dyn Progress,
) -> Result<Pulled> {
    let name = image_name(reference, op)?;
    if let Some(record) = engine.daemon.get_image(&name, op).await? {
        // an image whose content or snapshots were removed (or never unpacked) is pulled again
        match images::load(&engine.daemon, &record.target, &name, op).await {
            Ok(image) if complete(engine, &image, op).await? => {
                let top = top_chain(&image);
                return Ok(Pulled { image, top });
            }
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    pull_image(engine, registry, reference, op, progress).await
}

/// Whether every layer blob of `image` is in the content store and its top layer is unpacked.
async fn complete(engine: &ContainerdEngine, image: &LocalImage, op: Op) -> Result<bool> {
    for layer in image.layers() {
        if engine
            .daemon
            .content_labels(&layer.digest, op)
            .await?
            .is_none()
        {
            return Ok(false);
        }
    }
    Ok(match top_chain(image) {
        None => true,
        Some(chain) => engine.daemon.stat_snapshot(&chain, op).await?.is_some(),
    })
}

fn top_chain(image: &LocalImage) -> Option<String> {
    image
        .diff_ids()
        .iter()
        .fold(None, |parent, diff| Some(chain_id(parent.as_deref(), diff)))
}

#[allow(clippy::too_many_arguments)]
async fn fetch(
    daemon: &Daemon,
    guard: &Guard,
    registry: &RegistryClient,
    image: &ImageRef,
    name: &str,
    op: Op,
    progress: &dyn Progress,
) -> Result<Pulled> {
    progress.event(ProgressEvent::Line(format!("pulling {name}")));
    let source = (
        distribution_source(&image.registry),
        image.repository.clone(),
    );
    let top = registry.get_manifest(image).await.map_err(|e| {
        error(e.kind(), op, format!("{name}: {}", e.message()))
            .with_hint(berth_registry::pull_hint(&e))
            .with_source(e)
    })?;
    let top_descriptor = Descriptor {
        media_type: top.media_type.clone(),
        digest: top.digest.clone(),
        size: top.bytes.len() as i64,
    };
    let parse = |bytes: &[u8]| {
        serde_json::from_slice::<serde_json::Value>(bytes).map_err(|e| {
            error(
                ErrorKind::Protocol,
                op,
                format!("{name}: the registry sent a manifest that is not JSON: {e}"),
            )
        })
    };
    let top_json = parse(&top.bytes)?;
    let (manifest, manifest_bytes, index_labels) =
        if is_index(&top.media_type) || top_json.get("manifests").is_some() {
            let chosen = images::pick_platform(&top_json, name, op)?;
            let child = registry
                .get_manifest(&image.with_digest(&chosen.digest))
                .await?;
            let mut index_labels = HashMap::from([source.clone()]);
            let children = top_json["manifests"].as_array().into_iter().flatten();
            for (i, m) in children.enumerate() {
                if let Some(d) = m["digest"].as_str() {
                    index_labels.insert(format!("{}.m.{i}", labels::REF_CONTENT), d.to_string());
                }
            }
            let chosen = Descriptor {
                media_type: child.media_type.clone(),
                ..chosen
            };
            (chosen, child.bytes, Some(index_labels))
        } else {
            (top_descriptor.clone(), top.bytes.clone(), None)
        };
    let manifest_json = parse(&manifest_bytes)?;
    let (config, layers) = images::manifest_parts(&manifest_json, name, op)?;

    let config_bytes = registry
        .again(|| async {
            registry
                .get_blob(image, &config.digest)
                .await?
                .into_bytes()
                .await
        })
        .await?;
    let config_json = parse(&config_bytes)?;
    let diff_ids = images::strings(&config_json["rootfs"]["diff_ids"]);
    if diff_ids.len() != layers.len() {
        return Err(error(
            ErrorKind::Protocol,
            op,
            format!(
                "{name}: {} layers but {} diff ids in the config",
                layers.len(),
                diff_ids.len()
            ),
        ));
    }

    // layers, then the config, then the manifest (and index): parents only ever name content that exists
    for (layer, diff_id) in layers.iter().zip(&diff_ids) {
        let mut layer_labels = HashMap::from([source.clone()]);
        layer_labels.insert(labels::UNCOMPRESSED.to_string(), diff_id.clone());
        if daemon.content_labels(&layer.digest, op).await?.is_some() {
            daemon
                .lease_content(guard.lease_id(), &layer.digest, op)
                .await?;
            daemon
                .add_content_labels(&layer.digest, &layer_labels, op)
                .await?;
            continue;
        }
        let id = layer.digest.clone();
        let total = layer.size.max(0) as u64;
        progress.event(ProgressEvent::Transfer {
            id: id.clone(),
            current: 0,
            total: Some(total),
        });
        // each try writes under a new ingest reference; the guard aborts the ones a cut-off download left
        registry
            .again(|| async {
                let blob = registry.get_blob(image, &layer.digest).await?;
                write(
                    daemon,
                    guard,
                    layer,
                    layer_labels.clone(),
                    Box::pin(blob),
                    op,
                )
                .await
            })
            .await?;
        progress.event(ProgressEvent::Transfer {
            id,
            current: total,
            total: Some(total),
        });
    }

    let top_chain = diff_ids.iter().fold(None, |parent: Option<String>, diff| {
        Some(chain_id(parent.as_deref(), diff))
    });
    let mut config_labels = HashMap::from([source.clone()]);
    if let Some(chain) = &top_chain {
        config_labels.insert(labels::snapshot_ref(&daemon.snapshotter), chain.clone());
    }
    let bytes = config_bytes.clone();
    write(
        daemon,
        guard,
        &config,
        config_labels,
        Box::pin(futures_util::stream::iter([Ok(bytes)])),
        op,
    )
    .await?;

    let mut manifest_labels = HashMap::from([source.clone()]);
    manifest_labels.insert(labels::REF_CONFIG.to_string(), config.digest.clone());
    for (i, layer) in layers.iter().enumerate() {
        manifest_labels.insert(
            format!("{}.l.{i}", labels::REF_CONTENT),
            layer.digest.clone(),
        );
    }
    write(
        daemon,
        guard,
        &manifest,
        manifest_labels,
        Box::pin(futures_util::stream::iter([Ok(manifest_bytes.clone())])),
        op,
    )
    .await?;
    if let Some(index_labels) = index_labels {
        write(
            daemon,
            guard,
            &top_descriptor,
            index_labels,
            Box::pin(futures_util::stream::iter([Ok(top.bytes.clone())])),
            op,
        )
        .await?;
    }

    unpack(daemon, guard, &layers, &diff_ids, op).await?;
    daemon
        .put_image(name, &top_descriptor, HashMap::new(), op)
        .await?;
    Ok(Pulled {
        image: LocalImage {
            manifest,
            layers,
            config,
            config_json,
        },
        top: top_chain,
    })
}

/// Writes one blob under the guard's lease.
pub(crate) async fn write(
    daemon: &Daemon,
    guard: &Guard,
    blob: &Descriptor,
    labels: HashMap<String, String>,
    data: BlobStream,
    op: Op,
) -> Result<()> {
    // the ref names this process: an ingest a killed berth left is told from a running one's by it
    let reference = crate::owner::Owner::this().name("ingest");
    guard.ingest(&reference);
    daemon
        .write_blob(&reference, &blob.digest, blob.size, labels, data, op)
        .await?;
    guard.ingest_done(&reference);
    Ok(())
}

/// Unpacks `layers` into the snapshotter: for each layer whose chain id has no snapshot yet, prepare an active
/// snapshot on the parent chain, apply the layer through the diff service, and commit it by chain id.
pub(crate) async fn unpack(
    daemon: &Daemon,
    guard: &Guard,
    layers: &[Descriptor],
    diff_ids: &[String],
    op: Op,
) -> Result<()> {
    let mut parent: Option<String> = None;
    for (layer, diff_id) in layers.iter().zip(diff_ids) {
        let chain = chain_id(parent.as_deref(), diff_id);
        if daemon.stat_snapshot(&chain, op).await?.is_none() {
            let key = unique_id("unpack");
            guard.snapshot(&key);
            let mounts = daemon
                .prepare(&key, parent.as_deref().unwrap_or(""), op)
                .await?;
            let applied = daemon.apply(layer, &mounts, op).await?;
            if applied.digest != *diff_id {
                return Err(error(
                    ErrorKind::Protocol,
                    op,
                    format!(
                        "layer {} unpacked to {}, but the config says {diff_id}",
                        layer.digest, applied.digest
                    ),
                ));
            }
            if !daemon.commit(&chain, &key, HashMap::new(), op).await? {
                // another pull committed the same chain meanwhile
                daemon.remove_snapshot(&key, op).await?;
            }
            guard.snapshot_done(&key);
        }
        parent = Some(chain);
    }
    Ok(())
}
