//! What berth remembers between pushes of exported images, in its cache folder: for each layer it compressed
//! (by diff id), the blob it made and the repositories it went to; for each Docker save folder name, the
//! layer it held; for each config, its size. With it a push asks the registry about blobs before exporting,
//! skips or mounts the ones already there, and pushes an image the registry has in full without exporting it.
//!
//! It is only a shortcut: every entry is checked against the registry before it is trusted, and one that
//! cannot be read or written is as if it were not there.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// A blob berth made from a layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Made {
    /// The compressed blob's digest.
    pub(crate) digest: String,
    /// Its size.
    pub(crate) size: u64,
    /// `registry/repository` names it was pushed to.
    #[serde(default)]
    pub(crate) repositories: Vec<String>,
}

/// The memory: a folder, or nothing when berth has no cache folder.
#[derive(Debug, Clone)]
pub(crate) struct Memory {
    dir: Option<PathBuf>,
}

impl Memory {
    pub(crate) fn new(dir: Option<&Path>) -> Self {
        Memory {
            dir: dir.map(Path::to_path_buf),
        }
    }

    /// The blob made from layer `diff_id`.
    pub(crate) fn layer(&self, diff_id: &str) -> Option<Made> {
        serde_json::from_slice(&self.read("layers", diff_id)?).ok()
    }

    /// Remembers that layer `diff_id` made `digest` of `size` bytes, now in `repository`.
    pub(crate) fn remember_layer(&self, diff_id: &str, digest: &str, size: u64, repository: &str) {
        let mut made = self
            .layer(diff_id)
            .filter(|m| m.digest == digest)
            .unwrap_or(Made {
                digest: digest.to_string(),
                size,
                repositories: Vec::new(),
            });
        if !made.repositories.iter().any(|r| r == repository) {
            made.repositories.push(repository.to_string());
        }
        if let Ok(json) = serde_json::to_vec(&made) {
            self.write("layers", diff_id, &json);
        }
    }

    /// The diff id of the layer in Docker save folder `name` (a v1 id: the same for the same layer chain).
    pub(crate) fn folder(&self, name: &str) -> Option<String> {
        let text = String::from_utf8(self.read("folders", name)?).ok()?;
        is_digest(&text).then_some(text)
    }

    pub(crate) fn remember_folder(&self, name: &str, diff_id: &str) {
        self.write("folders", name, diff_id.as_bytes());
    }

    /// The size of config `digest`.
    pub(crate) fn config_size(&self, digest: &str) -> Option<u64> {
        String::from_utf8(self.read("configs", digest)?)
            .ok()?
            .parse()
            .ok()
    }

    pub(crate) fn remember_config(&self, digest: &str, size: u64) {
        self.write("configs", digest, size.to_string().as_bytes());
    }

    fn path(&self, kind: &str, key: &str) -> Option<PathBuf> {
        let name = key.strip_prefix("sha256:").unwrap_or(key);
        // keys are hex digests or Docker's hex folder names; anything else is not looked up
        let hex = name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit());
        Some(self.dir.as_ref()?.join(kind).join(hex.then_some(name)?))
    }

    fn read(&self, kind: &str, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(kind, key)?).ok()
    }

    /// Writes through a temporary file, so a reader never sees half an entry.
    fn write(&self, kind: &str, key: &str, data: &[u8]) {
        let Some(path) = self.path(kind, key) else {
            return;
        };
        let Some(dir) = path.parent() else { return };
        let written = std::fs::create_dir_all(dir)
            .and_then(|()| tempfile::NamedTempFile::new_in(dir))
            .and_then(|mut file| {
                std::io::Write::write_all(&mut file, data)?;
                file.persist(&path).map_err(|e| e.error)?;
                Ok(())
            });
        // a cache that cannot be written costs the next push its shortcut, nothing else
        drop(written);
    }
}

/// `sha256:` and 64 hex digits.
pub(crate) fn is_digest(text: &str) -> bool {
    text.strip_prefix("sha256:")
        .is_some_and(|hex| hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn remembers_layers_folders_and_configs() {
        let dir = tempfile::tempdir().expect("test setup");
        let memory = Memory::new(Some(dir.path()));
        assert_eq!(memory.layer(D1), None);
        memory.remember_layer(D1, D2, 10, "r/a");
        memory.remember_layer(D1, D2, 10, "r/b");
        memory.remember_layer(D1, D2, 10, "r/a");
        let made = memory.layer(D1).expect("test setup");
        assert_eq!(made.repositories, ["r/a", "r/b"]);
        memory.remember_folder(&D2[7..], D1);
        assert_eq!(memory.folder(&D2[7..]).as_deref(), Some(D1));
        memory.remember_config(D2, 42);
        assert_eq!(memory.config_size(D2), Some(42));
        // names that are not digests never become paths
        memory.remember_folder("../escape", D1);
        assert_eq!(memory.folder("../escape"), None);
        assert!(!dir.path().join("escape").exists());
    }

    #[test]
    fn no_folder_means_no_memory() {
        let memory = Memory::new(None);
        memory.remember_layer(D1, D2, 1, "r/a");
        assert_eq!(memory.layer(D1), None);
    }
}
