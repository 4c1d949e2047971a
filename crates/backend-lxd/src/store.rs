//! berth's images for LXD: an OCI image layout under the state folder (`oci/`: `oci-layout`, `index.json`,
//! `blobs/sha256/...`). LXD keeps no OCI images of its own, so what `build` and `pull` make lives here, named in
//! `index.json` by the `org.opencontainers.image.ref.name` annotation (the full reference), and `push`,
//! `inspect`, `tag` and `remove` read it. `skopeo copy oci:<state>/oci:<name> ...` reads it too.
//!
//! Blobs are written under a temporary name and renamed into place, so a reader never sees half a blob;
//! `index.json` is rewritten whole under an exclusive `flock`, so two berth processes never lose a tag. Each
//! blob's repositories in a registry are kept beside it (`sources/`), so a push can mount instead of upload.

use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use berth_core::{ErrorKind, Operation, Result};
use serde_json::{json, Value};

use crate::errors::{error, io_error};

/// The annotation naming an image in `index.json`.
pub(crate) const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// OCI media types berth writes.
pub(crate) const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub(crate) const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub(crate) const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The OCI layout.
#[derive(Debug, Clone)]
pub(crate) struct Store {
    root: PathBuf,
}

/// A local image: its manifest and config.
#[derive(Debug, Clone)]
pub(crate) struct LocalImage {
    pub(crate) manifest_digest: String,
    pub(crate) manifest_media_type: String,
    pub(crate) manifest: Value,
    pub(crate) config_digest: String,
    pub(crate) config: Value,
}

impl LocalImage {
    /// The layer descriptors, in order.
    pub(crate) fn layers(&self) -> Vec<Value> {
        self.manifest["layers"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The layers' diff ids, in order.
    pub(crate) fn diff_ids(&self) -> Vec<String> {
        berth_core::image_config::strings(&self.config["rootfs"]["diff_ids"])
    }
}

/// Whether `digest` is `sha256:` and 64 lowercase hex digits (so it is safe as a file name).
pub(crate) fn valid_digest(digest: &str) -> bool {
    digest.strip_prefix("sha256:").is_some_and(|hex| {
        hex.len() == 64
            && hex
                .chars()
                .all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c))
    })
}

impl Store {
    /// Opens (and on first use creates) the layout in `root`.
    pub(crate) fn open(root: PathBuf, op: Operation) -> Result<Store> {
        let blobs = root.join("blobs/sha256");
        fs::create_dir_all(&blobs).map_err(|e| io_error(op, blobs.display(), e))?;
        for dir in ["sources", "tmp"] {
            fs::create_dir_all(root.join(dir)).map_err(|e| io_error(op, root.display(), e))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            fs::write(&layout, r#"{"imageLayoutVersion":"1.0.0"}"#)
                .map_err(|e| io_error(op, layout.display(), e))?;
        }
        Ok(Store { root })
    }

    /// A new temporary file name on the store's file system (renamed into place from there), unique across
    /// berth processes and the builds and pulls of one process.
    pub(crate) fn tmp_file(&self, what: &str) -> PathBuf {
        self.root
            .join("tmp")
            .join(format!("{what}.{}", crate::instance::unique_name()))
    }

    /// Where blob `digest` is (whether or not it exists).
    pub(crate) fn blob_path(&self, digest: &str, op: Operation) -> Result<PathBuf> {
        if !valid_digest(digest) {
            return Err(error(
                ErrorKind::Protocol,
                op,
                format!("`{digest}` is not a sha256 digest"),
            ));
        }
        Ok(self
            .root
            .join("blobs/sha256")
            .join(&digest["sha256:".len()..]))
    }

    pub(crate) fn has_blob(&self, digest: &str, op: Operation) -> Result<bool> {
        Ok(self.blob_path(digest, op)?.exists())
    }

    /// Moves the finished file `from` (on the store's file system) into place as blob `digest`, synced first so
    /// that a blob in place is whole after a crash.
    pub(crate) fn put_file(&self, from: &Path, digest: &str, op: Operation) -> Result<()> {
        let to = self.blob_path(digest, op)?;
        File::open(from)
            .and_then(|file| file.sync_all())
            .map_err(|e| io_error(op, from.display(), e))?;
        fs::rename(from, &to).map_err(|e| io_error(op, to.display(), e))
    }

    /// Stores `bytes` and returns their digest.
    pub(crate) fn put_bytes(&self, bytes: &[u8], op: Operation) -> Result<String> {
        let digest = berth_registry::sha256_digest(bytes);
        if self.has_blob(&digest, op)? {
            return Ok(digest);
        }
        let tmp = self.tmp_file(&digest[7..]);
        let written = File::create(&tmp).and_then(|mut file| file.write_all(bytes));
        if let Err(e) = written {
            // half a file on a full disk: nothing reads tmp/, but it holds the space the next write needs
            let _ = fs::remove_file(&tmp);
            return Err(io_error(op, tmp.display(), e));
        }
        self.put_file(&tmp, &digest, op)?;
        Ok(digest)
    }

    pub(crate) fn read(&self, digest: &str, op: Operation) -> Result<Vec<u8>> {
        let path = self.blob_path(digest, op)?;
        fs::read(&path).map_err(|e| {
            io_error(op, format!("blob {digest}"), e).with_hint(
                "the image's content was removed from berth's LXD store: pull or build it again",
            )
        })
    }

    fn read_json(&self, digest: &str, op: Operation) -> Result<Value> {
        serde_json::from_slice(&self.read(digest, op)?).map_err(|e| {
            error(
                ErrorKind::Protocol,
                op,
                format!("blob {digest} is not JSON: {e}"),
            )
        })
    }

    /// The image `name` points at, if any.
    pub(crate) fn image(&self, name: &str, op: Operation) -> Result<Option<LocalImage>> {
        let Some(descriptor) = self.resolve(name, op)? else {
            return Ok(None);
        };
        let manifest_digest = descriptor["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        self.load(&manifest_digest, op).map(Some)
    }

    /// The image whose manifest is `manifest_digest`.
    pub(crate) fn load(&self, manifest_digest: &str, op: Operation) -> Result<LocalImage> {
        let manifest = self.read_json(manifest_digest, op)?;
        let config_digest = manifest["config"]["digest"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let config = self.read_json(&config_digest, op)?;
        Ok(LocalImage {
            manifest_digest: manifest_digest.to_string(),
            manifest_media_type: manifest["mediaType"]
                .as_str()
                .unwrap_or(OCI_MANIFEST)
                .to_string(),
            manifest,
            config_digest,
            config,
        })
    }

    fn index(&self, op: Operation) -> Result<Vec<Value>> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => {
                let index: Value = serde_json::from_slice(&bytes).map_err(|e| {
                    error(ErrorKind::Protocol, op, format!("{}: {e}", path.display()))
                })?;
                Ok(index["manifests"].as_array().cloned().unwrap_or_default())
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(io_error(op, path.display(), e)),
        }
    }

    /// The manifest descriptor `name` points at.
    pub(crate) fn resolve(&self, name: &str, op: Operation) -> Result<Option<Value>> {
        Ok(self
            .index(op)?
            .into_iter()
            .find(|d| d["annotations"][REF_NAME] == name))
    }

    /// The names pointing at manifest `digest`.
    pub(crate) fn names_of(&self, digest: &str, op: Operation) -> Result<Vec<String>> {
        Ok(self
            .index(op)?
            .iter()
            .filter(|d| d["digest"] == digest)
            .filter_map(|d| d["annotations"][REF_NAME].as_str().map(str::to_string))
            .collect())
    }

    /// Every name with the digest it points at.
    pub(crate) fn names(&self, op: Operation) -> Result<Vec<(String, String)>> {
        Ok(self
            .index(op)?
            .iter()
            .map(|d| {
                let text = |v: &Value| v.as_str().unwrap_or_default().to_string();
                (text(&d["annotations"][REF_NAME]), text(&d["digest"]))
            })
            .collect())
    }

    /// Removes every blob not in `keep` (and what is known of its repositories); returns how many and their
    /// bytes. Only for a prune, which holds the state folder alone.
    pub(crate) fn sweep(
        &self,
        keep: &std::collections::HashSet<String>,
        op: Operation,
    ) -> Result<(usize, u64)> {
        let dir = self.root.join("blobs/sha256");
        let listing = fs::read_dir(&dir).map_err(|e| io_error(op, dir.display(), e))?;
        let (mut count, mut bytes) = (0, 0);
        for entry in listing.flatten() {
            let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
            if keep.contains(&digest) {
                continue;
            }
            let size = entry.metadata().map_or(0, |m| m.len());
            if fs::remove_file(entry.path()).is_ok() {
                count += 1;
                bytes += size;
                let _ = fs::remove_file(self.root.join("sources").join(digest.replace(':', "-")));
            }
        }
        Ok((count, bytes))
    }

    /// Changes `index.json` under the store's lock.
    fn edit_index(&self, op: Operation, edit: impl FnOnce(&mut Vec<Value>)) -> Result<()> {
        let lock_path = self.root.join("index.lock");
        let lock = File::create(&lock_path).map_err(|e| io_error(op, lock_path.display(), e))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| io_error(op, lock_path.display(), e.into()))?;
        let mut manifests = self.index(op)?;
        edit(&mut manifests);
        let body = json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": manifests});
        let tmp = self.tmp_file("index.json");
        fs::write(&tmp, serde_json::to_vec_pretty(&body).unwrap_or_default())
            .and_then(|()| fs::rename(&tmp, self.root.join("index.json")))
            .map_err(|e| {
                // index.json stays as it was; the half-written copy goes
                let _ = fs::remove_file(&tmp);
                io_error(op, tmp.display(), e)
            })
    }

    /// Points `name` at the manifest `descriptor` (`mediaType`, `digest`, `size`), replacing what it named.
    pub(crate) fn set_ref(&self, name: &str, descriptor: &Value, op: Operation) -> Result<()> {
        let mut entry = descriptor.clone();
        entry["annotations"] = json!({ REF_NAME: name });
        self.edit_index(op, |manifests| {
            manifests.retain(|d| d["annotations"][REF_NAME] != name);
            manifests.push(entry);
        })
    }

    /// Removes `name`; `false` if it named nothing.
    pub(crate) fn remove_ref(&self, name: &str, op: Operation) -> Result<bool> {
        let mut removed = false;
        self.edit_index(op, |manifests| {
            let before = manifests.len();
            manifests.retain(|d| d["annotations"][REF_NAME] != name);
            removed = manifests.len() != before;
        })?;
        Ok(removed)
    }

    /// The repositories (`registry/repository`) blob `digest` is known to be in.
    pub(crate) fn sources(&self, digest: &str) -> Vec<String> {
        fs::read_to_string(self.root.join("sources").join(digest.replace(':', "-")))
            .map(|s| s.lines().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Records that blob `digest` is in `repository` (best effort: only a later push's mount depends on it).
    pub(crate) fn add_source(&self, digest: &str, repository: &str) {
        if !valid_digest(digest) || self.sources(digest).iter().any(|r| r == repository) {
            return;
        }
        let path = self.root.join("sources").join(digest.replace(':', "-"));
        if let Ok(mut file) = fs::OpenOptions::new().create(true).append(true).open(path) {
            let _ = writeln!(file, "{repository}");
        }
    }
}

/// The descriptor of a blob.
pub(crate) fn descriptor(media_type: &str, digest: &str, size: u64) -> Value {
    json!({"mediaType": media_type, "digest": digest, "size": size})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_point_at_manifests_and_go_away() {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(dir.path().join("oci"), Operation::Tag).expect("open");
        let op = Operation::Tag;
        let config = store
            .put_bytes(br#"{"rootfs":{"diff_ids":[]}}"#, op)
            .expect("config");
        let manifest = json!({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
            "config": descriptor(OCI_CONFIG, &config, 26), "layers": []});
        let bytes = serde_json::to_vec(&manifest).expect("json");
        let digest = store.put_bytes(&bytes, op).expect("manifest");
        let d = descriptor(OCI_MANIFEST, &digest, bytes.len() as u64);
        store.set_ref("r/a:1", &d, op).expect("tag a");
        store.set_ref("r/b:1", &d, op).expect("tag b");
        assert_eq!(
            store.names_of(&digest, op).expect("names"),
            ["r/a:1", "r/b:1"]
        );
        let image = store.image("r/a:1", op).expect("load").expect("present");
        assert_eq!(image.config_digest, config);
        assert!(store.remove_ref("r/a:1", op).expect("remove"));
        assert!(!store.remove_ref("r/a:1", op).expect("again"));
        assert!(store.image("r/a:1", op).expect("load").is_none());
        assert!(store.blob_path("sha256:../../etc", op).is_err());
    }

    /// A blob that does not fit fails as out of space, and leaves no half-written file in tmp/ holding the
    /// room the next write needs. (Mounts a tmpfs: needs root, as the suite does.)
    #[test]
    fn a_full_store_keeps_no_half_written_blob() {
        let dir = tempfile::tempdir().expect("dir");
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a tmpfs (the suite runs as root)");
        let op = Operation::Pull;
        let tried = Store::open(dir.path().join("oci"), op)
            .and_then(|store| store.put_bytes(&vec![7u8; 1 << 20], op).map(|_| store));
        let tmp_left = std::fs::read_dir(dir.path().join("oci/tmp")).map(|d| d.count());
        let _ = std::process::Command::new("umount")
            .arg(dir.path())
            .status();
        let Err(err) = tried else {
            panic!("a megabyte does not fit in 256 KiB")
        };
        assert_eq!(err.kind(), ErrorKind::ResourceExhausted, "{err}");
        assert_eq!(
            tmp_left.expect("tmp/ listed"),
            0,
            "nothing half-written is left"
        );
    }
}
