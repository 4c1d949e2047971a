//! An image in dockerd's classic image store with the overlay2 driver, read without `docker save`.
//!
//! `image/overlay2/imagedb/content/sha256/<id>` is the config; each layer is found by its chain id (the first
//! diff id, then `sha256("<parent chain id> <diff id>")`) in `image/overlay2/layerdb/sha256/<chain id>/`, whose
//! `diff` names its diff id, `cache-id` its folder `overlay2/<cache id>/diff` and `tar-split.json.gz` its
//! record. dockerd keeps no lock files (its locks live in the daemon), so a layer removed while berth reads it
//! is a missing file, and the push falls back to the export. Docker with the containerd image store keeps
//! none of this: its images are not found here, which falls back too.

use std::path::Path;

use sha2::{Digest as _, Sha256};

use super::{LayerFiles, StoredImage, Unusable};

/// The one driver read: Docker's default.
const DRIVER: &str = "overlay2";

/// The image whose config digest is `id`, under dockerd's root `root` (`/var/lib/docker`) using `driver`.
pub(crate) fn open(root: &Path, driver: &str, id: &str) -> Result<StoredImage, Unusable> {
    if driver != DRIVER {
        return Err(Unusable(format!(
            "its storage driver is {driver}; berth reads {DRIVER} only"
        )));
    }
    let hex = id.strip_prefix("sha256:").unwrap_or(id);
    let images = root.join("image").join(DRIVER);
    let path = images.join("imagedb/content/sha256").join(hex);
    let config = std::fs::read(&path).map_err(|e| Unusable::io(&path, e))?;
    let parsed: serde_json::Value = serde_json::from_slice(&config)
        .map_err(|e| Unusable(format!("{} cannot be read: {e}", path.display())))?;
    let diff_ids: Vec<String> = parsed["rootfs"]["diff_ids"]
        .as_array()
        .map(|ids| {
            ids.iter()
                .filter_map(|d| d.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut layers = Vec::with_capacity(diff_ids.len());
    let mut chain = String::new();
    for diff_id in diff_ids {
        chain = if chain.is_empty() {
            diff_id.clone()
        } else {
            format!(
                "sha256:{:x}",
                Sha256::digest(format!("{chain} {diff_id}").as_bytes())
            )
        };
        let folder = images
            .join("layerdb/sha256")
            .join(chain.strip_prefix("sha256:").unwrap_or(&chain));
        let read = |name: &str| {
            let path = folder.join(name);
            std::fs::read_to_string(&path)
                .map(|s| s.trim().to_string())
                .map_err(|e| Unusable::io(&path, e))
        };
        if read("diff")? != diff_id {
            return Err(Unusable(format!(
                "{} names another diff id than the config",
                folder.display()
            )));
        }
        let cache_id = read("cache-id")?;
        if cache_id.is_empty() || cache_id.contains('/') || cache_id.starts_with('.') {
            return Err(Unusable(format!(
                "{} has no usable cache-id",
                folder.display()
            )));
        }
        layers.push(LayerFiles {
            diff_id,
            record: folder.join("tar-split.json.gz"),
            diff: root.join(DRIVER).join(cache_id).join("diff"),
        });
    }
    Ok(StoredImage {
        config: config.into(),
        layers,
    })
}
