//! An image in containers/storage (Podman, buildah, skopeo) with the overlay driver, read as skopeo's
//! `containers-storage:` transport reads it, without the service.
//!
//! `overlay-images/images.json` names each image's top layer and keeps its config as "big data" beside it
//! (`overlay-images/<id>/=<base64 of "sha256:<id>">`); `overlay-layers/layers.json` gives each layer's parent
//! and diff digest, `overlay-layers/<id>.tar-split.gz` its tar-split record, and `overlay/<id>/diff` its
//! files. The images' and layers' lock files are held for reading while the JSON is read, and not while layers
//! stream: a push lasts minutes, and a writer waiting on the lock (a build committing a layer) stalls the whole
//! service behind it, so that even `inspect` times out. A layer removed meanwhile is a missing file or a wrong
//! digest, and the push goes to the export.

use std::path::Path;

use base64::Engine as _;
use serde::Deserialize;

use super::lock::ReadLock;
use super::{LayerFiles, StoredImage, Unusable};

/// The one driver read: the default everywhere Podman runs on a kernel with overlayfs.
const DRIVER: &str = "overlay";

#[derive(Deserialize)]
struct Image {
    id: String,
    #[serde(default)]
    layer: String,
}

#[derive(Deserialize)]
struct Layer {
    id: String,
    #[serde(default)]
    parent: String,
    #[serde(default, rename = "diff-digest")]
    diff_digest: String,
}

/// The image whose config digest is `id`, in the store at `root` (its graph root) using `driver`.
pub(crate) fn open(root: &Path, driver: &str, id: &str) -> Result<StoredImage, Unusable> {
    if driver != DRIVER {
        return Err(Unusable(format!(
            "its storage driver is {driver}; berth reads {DRIVER} only"
        )));
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let images_dir = root.join(format!("{DRIVER}-images"));
    let layers_dir = root.join(format!("{DRIVER}-layers"));
    let layers_lock = ReadLock::take(&layers_dir.join("layers.lock"))
        .map_err(|e| Unusable::io(&layers_dir.join("layers.lock"), e))?;
    let (top, config) = {
        let _images_lock = ReadLock::take(&images_dir.join("images.lock"))
            .map_err(|e| Unusable::io(&images_dir.join("images.lock"), e))?;
        let images: Vec<Image> = read_json(&images_dir.join("images.json"))?;
        let image = images
            .into_iter()
            .find(|i| i.id == hex)
            .ok_or_else(|| Unusable(format!("the image {id} is not in {}", root.display())))?;
        let key = format!("sha256:{hex}");
        let name = format!(
            "={}",
            base64::engine::general_purpose::STANDARD.encode(key.as_bytes())
        );
        let path = images_dir.join(&image.id).join(name);
        let config = std::fs::read(&path).map_err(|e| Unusable::io(&path, e))?;
        (image.layer, config)
    };
    let layers: Vec<Layer> = read_json(&layers_dir.join("layers.json"))?;
    drop(layers_lock);
    let mut chain = Vec::new();
    let mut next = top;
    while !next.is_empty() {
        let layer = layers
            .iter()
            .find(|l| l.id == next)
            .ok_or_else(|| Unusable(format!("its layer {next} is not in layers.json")))?;
        if chain.len() > layers.len() {
            return Err(Unusable("layers.json's parents form a loop".into()));
        }
        chain.push(LayerFiles {
            diff_id: layer.diff_digest.clone(),
            record: layers_dir.join(format!("{}.tar-split.gz", layer.id)),
            diff: root.join(DRIVER).join(&layer.id).join("diff"),
        });
        next = layer.parent.clone();
    }
    chain.reverse();
    Ok(StoredImage {
        config: config.into(),
        layers: chain,
    })
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Unusable> {
    let bytes = std::fs::read(path).map_err(|e| Unusable::io(path, e))?;
    serde_json::from_slice(&bytes)
        .map_err(|e| Unusable(format!("{} cannot be read: {e}", path.display())))
}
