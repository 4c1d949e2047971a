//! berth's step cache for LXD: the layer a RUN or COPY step made, keyed on the layer chain below it and
//! everything the step depends on (for RUN: the command, the config it runs with, the contents of the files it
//! mounts; for COPY: each file's destination, mode and contents). Entries are small JSON files naming a blob of
//! the store, so a cached step costs no container. LXD snapshots were the other choice; they live in one
//! container, and reusing them across builds would mean publishing a container as an image per step (a full
//! tar of the root folder each time), where the layer berth needs for the image is already here.
//!
//! The cache also records when each image was first made ([`StepCache::created`]), so a rebuild from the same
//! inputs gives the same config and the same digest.

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
        if !store.has_blob(layer.digest(), Operation::Build)? {
            return Ok(None);
        }
        touch(&self.path(key));
        Ok(Some(layer))
    }

    /// Records `layer` under `key`.
    pub(crate) fn put(&self, key: &str, layer: &Layer) -> Result<()> {
        self.write(
            key,
            &json!({"descriptor": layer.descriptor, "diff_id": layer.diff_id}),
        )
    }

    /// The creation time of the image whose config, written with [`PENDING_TIME`] for every time berth sets,
    /// is `unstamped`: the time recorded when a build first made that image, else `now` (then recorded). So a
    /// rebuild from the same inputs whose layers all come from the cache writes the same config, and the same
    /// manifest digest, as the build before it, as Docker's cached rebuilds keep their image id.
    pub(crate) fn created(&self, unstamped: &[u8], now: &str) -> Result<String> {
        let key = berth_layer::oci::sha256(&[&b"IMAGE\n"[..], unstamped].concat());
        let recorded = std::fs::read(self.path(&key))
            .ok()
            .and_then(|bytes| serde_json::from_slice::<Value>(&bytes).ok())
            .and_then(|entry| entry["created"].as_str().map(str::to_string));
        match recorded {
            Some(created) => {
                touch(&self.path(&key));
                Ok(created)
            }
            None => {
                self.write(&key, &json!({ "created": now }))?;
                Ok(now.to_string())
            }
        }
    }

    /// Writes entry `key` whole, then renames it into place: readers never see half an entry.
    fn write(&self, key: &str, entry: &Value) -> Result<()> {
        let op = Operation::Build;
        std::fs::create_dir_all(&self.dir).map_err(|e| io_error(op, self.dir.display(), e))?;
        let path = self.path(key);
        let tmp = path.with_extension(crate::instance::unique_name());
        std::fs::write(&tmp, entry.to_string())
            .and_then(|()| std::fs::rename(&tmp, &path))
            .map_err(|e| io_error(op, path.display(), e))
    }
}

/// The time berth writes in the config while it builds, replaced by [`stamp`] at the end.
pub(crate) const PENDING_TIME: &str = "berth:pending";

/// Replaces [`PENDING_TIME`] with `created` in a config blob (its `created` and its history's).
pub(crate) fn stamp(blob: &mut Value, created: &str) {
    let pending = |time: &mut Value| {
        if *time == PENDING_TIME {
            *time = json!(created);
        }
    };
    pending(&mut blob["created"]);
    for entry in blob["history"].as_array_mut().into_iter().flatten() {
        pending(&mut entry["created"]);
    }
}

/// Marks an entry used now: pruning drops entries by the time since their last use.
fn touch(path: &std::path::Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(std::time::SystemTime::now());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_image_keeps_the_time_it_was_first_made() {
        let dir = tempfile::tempdir().expect("dir");
        let cache = StepCache::new(dir.path().join("steps"));
        let unstamped = |env: &str| {
            json!({"created": PENDING_TIME, "config": {"Env": [env]},
                "history": [{"created": "2020-01-01T00:00:00Z"}, {"created": PENDING_TIME}]})
        };
        let bytes = |v: &Value| serde_json::to_vec(v).expect("json");
        let first = cache
            .created(&bytes(&unstamped("A=1")), "2026-01-01T00:00:00Z")
            .expect("first");
        let again = cache
            .created(&bytes(&unstamped("A=1")), "2026-02-02T00:00:00Z")
            .expect("again");
        let other = cache
            .created(&bytes(&unstamped("A=2")), "2026-03-03T00:00:00Z")
            .expect("other");
        assert_eq!(first, "2026-01-01T00:00:00Z");
        assert_eq!(again, first, "the same image got a new creation time");
        assert_eq!(other, "2026-03-03T00:00:00Z");

        let mut blob = unstamped("A=1");
        stamp(&mut blob, &first);
        assert_eq!(blob["created"], first);
        assert_eq!(blob["history"][0]["created"], "2020-01-01T00:00:00Z");
        assert_eq!(blob["history"][1]["created"], first);
    }
}
