//! berth's step cache for LXD: the layer a RUN or COPY step made, keyed on the layer chain below it and
//! everything the step depends on (for RUN: the command, the config it runs with, the contents of the files it
//! mounts; for COPY: each file's destination, mode and contents). Entries are small JSON files naming a blob of
//! the store, so a cached step costs no container. LXD snapshots were the other choice; they live in one
//! container, and reusing them across builds would mean publishing a container as an image per step (a full
//! tar of the root folder each time), where the layer berth needs for the image is already here.

use std::path::PathBuf;

use berth_core::{Operation, Result};
use serde_json::{json, Value};

use crate::errors::io_error;
use crate::store::Store;

/// A layer of the image being built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layer {
    /// Its blob descriptor (OCI media type).
    pub(crate) descriptor: Value,
    pub(crate) diff_id: String,
}

impl Layer {
    pub(crate) fn digest(&self) -> &str {
        self.descriptor["digest"].as_str().unwrap_or_default()
    }
}

/// The cache folder.
pub(crate) struct StepCache {
    dir: PathBuf,
}

impl StepCache {
    pub(crate) fn new(dir: PathBuf) -> StepCache {
        StepCache { dir }
    }

    /// The key of a step with `definition` on top of layer chain `chain`.
    pub(crate) fn key(chain: Option<&str>, definition: &str) -> String {
        berth_layer::oci::sha256(format!("{}\n{definition}", chain.unwrap_or("")).as_bytes())
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(key.trim_start_matches("sha256:"))
    }

    /// The layer cached under `key`, if its blob is still in the store.
    pub(crate) fn get(&self, store: &Store, key: &str) -> Result<Option<Layer>> {
        let Ok(bytes) = std::fs::read(self.path(key)) else {
            return Ok(None);
        };
        let Ok(entry) = serde_json::from_slice::<Value>(&bytes) else {
            return Ok(None);
        };
        let layer = Layer {
            descriptor: entry["descriptor"].clone(),
            diff_id: entry["diff_id"].as_str().unwrap_or_default().to_string(),
        };
        Ok(store
            .has_blob(layer.digest(), Operation::Build)?
            .then_some(layer))
    }

    /// Records `layer` under `key` (written whole, then renamed: readers never see half an entry).
    pub(crate) fn put(&self, key: &str, layer: &Layer) -> Result<()> {
        let op = Operation::Build;
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(op, self.dir.display(), e))?;
        let path = self.path(key);
        let tmp = path.with_extension(crate::instance::unique_name());
        let entry = json!({"descriptor": layer.descriptor, "diff_id": layer.diff_id});
        std::fs::write(&tmp, entry.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| io_error(op, path.display(), e))
    }
}
