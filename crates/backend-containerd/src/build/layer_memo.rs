//! What COPY layers came to. A COPY's layer is a function of its files (targets, modes, contents' digests), their
//! owner and the folders it adds to the image: the same bytes whatever the parent below them. berth remembers each
//! layer's blob and diff id by those (in the state folder's `copy-layers`), so that a COPY whose layer the content
//! store holds already (a `--no-cache` build, or the same files on a parent that changed) only fills its snapshot
//! and hashes its tar, and one it has not seen streams its layer into the store as it writes it.
//!
//! A record is only a guess of which way is quicker: the tar's diff id is checked against it, and the blob must be
//! in the store with that diff id as its uncompressed label, or the layer is written as for a new one. Records
//! unused for the step cache's week go with [`berth_layer::memo::prune`].

use std::path::{Path, PathBuf};

use berth_core::{ErrorKind, Result};
use berth_layer::copy::{self, CopiedFile};

use super::Builder;
use crate::convert::Descriptor;
use crate::errors::{error, Op};
use crate::labels;
use crate::rootfs::SnapshotUnpack;
use sha2::{Digest as _, Sha256};

/// Part of every key: a change in how berth writes COPY layers makes every record a stranger.
const FORMAT: &str = "berth copy layer 1";

/// A layer berth wrote before.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KnownLayer {
    /// The blob's digest.
    pub(crate) digest: String,
    /// The blob's size.
    pub(crate) size: i64,
    /// The uncompressed tar's digest.
    pub(crate) diff_id: String,
}

/// The records' folder under `state_dir`.
pub(crate) fn folder(state_dir: &Path) -> PathBuf {
    state_dir.join("copy-layers")
}

/// The key of the layer `files` owned by `owner` make, with `folders` added.
pub(crate) fn key(files: &[CopiedFile], folders: &[String], owner: (u32, u32)) -> String {
    let mut hasher = Sha256::new();
    hasher.update(format!("{FORMAT}\n{}:{}\n", owner.0, owner.1));
    for folder in folders {
        hasher.update(format!("d {folder}\n"));
    }
    for file in files {
        hasher.update(format!(
            "f {} {:o} {}\n",
            file.target, file.mode, file.digest
        ));
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The layer recorded under `key`, if any (and marks the record used).
pub(crate) fn recall(folder: &Path, key: &str) -> Option<KnownLayer> {
    let path = folder.join(key);
    let text = std::fs::read_to_string(&path).ok()?;
    let mut parts = text.split_whitespace();
    let known = KnownLayer {
        digest: parts.next()?.to_string(),
        size: parts.next()?.parse().ok()?,
        diff_id: parts.next()?.to_string(),
    };
    let valid = |d: &str| d.len() == 71 && d.starts_with("sha256:");
    if !valid(&known.digest) || !valid(&known.diff_id) || known.size < 0 {
        return None;
    }
    berth_layer::memo::touch(&path);
    Some(known)
}

/// Records `layer` under `key` (best effort: a record that cannot be written costs only speed).
pub(crate) fn remember(folder: &Path, key: &str, layer: &KnownLayer) {
    let text = format!("{} {} {}\n", layer.digest, layer.size, layer.diff_id);
    let _ = berth_layer::memo::write_atomically(folder, key, &text);
}

/// The layer recorded under `key` in `folder`, when the content store holds its blob with its diff id.
pub(super) async fn held(builder: &Builder<'_>, folder: &Path, key: &str) -> Option<KnownLayer> {
    let known = recall(folder, key)?;
    holds(builder, &known).await.then_some(known)
}

/// Whether the content store holds `known`'s blob, with its diff id: the blob is added to the build's lease
/// first, so that no prune or collector takes it while the build uses it.
async fn holds(builder: &Builder<'_>, known: &KnownLayer) -> bool {
    let daemon = &builder.daemon;
    if daemon
        .lease_content(builder.guard.lease_id(), &known.digest, Op::Build)
        .await
        .is_err()
    {
        return false;
    }
    match daemon.content_labels(&known.digest, Op::Build).await {
        Ok(Some(labels)) => labels.get(labels::UNCOMPRESSED) == Some(&known.diff_id),
        _ => false,
    }
}

/// A COPY whose layer the store holds (`known`): its files go into the snapshot (through `unpack`) while the tar
/// is only hashed; a diff id other than the known one (the record was wrong) has the layer written as a new one.
pub(super) async fn reuse(
    builder: &Builder<'_>,
    known: KnownLayer,
    files: Vec<copy::CopiedFile>,
    folders: Vec<String>,
    owner: (u32, u32),
    mut unpack: Option<SnapshotUnpack>,
) -> Result<(Descriptor, String)> {
    let (files, folders, hashed) = tokio::task::spawn_blocking(move || {
        let into = unpack.as_mut().map(|u| u as &mut dyn copy::Unpack);
        let hashed = copy::diff_id_into(&files, &folders, owner, into);
        (files, folders, hashed)
    })
    .await
    .map_err(|e| {
        error(
            ErrorKind::Io,
            Op::Build,
            format!("writing the COPY layer: {e}"),
        )
    })?;
    let diff_id = hashed.map_err(|e| super::blob::layer_error(e, "the COPY layer"))?;
    if diff_id == known.diff_id {
        let blob = Descriptor {
            media_type: super::run::LAYER_GZIP.to_string(),
            digest: known.digest,
            size: known.size,
        };
        return Ok((blob, diff_id));
    }
    // the snapshot has the files already: the layer alone is written
    super::blob::write_layer_blob(builder, "the COPY layer", move |out| {
        copy::stream_layer_into(&files, &folders, owner, out, None)
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::plan::ContextSource;

    fn file(target: &str, digest: &str) -> CopiedFile {
        CopiedFile {
            target: target.into(),
            source: ContextSource::Bytes(Vec::new()),
            mode: 0o644,
            digest: digest.into(),
        }
    }

    #[test]
    fn the_key_changes_with_anything_in_the_layer() {
        let files = vec![file("/app/a", "aa"), file("/app/b", "bb")];
        let folders = vec!["/app".to_string()];
        let base = key(&files, &folders, (0, 0));
        assert_eq!(base, key(&files, &folders, (0, 0)));
        assert_ne!(base, key(&files, &folders, (1000, 1000)), "owner");
        assert_ne!(base, key(&files, &[], (0, 0)), "folders added");
        assert_ne!(
            base,
            key(
                &[file("/app/a", "aa"), file("/app/b", "cc")],
                &folders,
                (0, 0)
            )
        );
        let mut moded = files.clone();
        moded[0].mode = 0o755;
        assert_ne!(base, key(&moded, &folders, (0, 0)), "mode");
    }

    #[test]
    fn records_are_recalled_and_damaged_ones_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let folder = folder(dir.path());
        let layer = KnownLayer {
            digest: format!("sha256:{}", "a".repeat(64)),
            size: 42,
            diff_id: format!("sha256:{}", "b".repeat(64)),
        };
        assert_eq!(recall(&folder, "k"), None);
        remember(&folder, "k", &layer);
        assert_eq!(recall(&folder, "k"), Some(layer));
        std::fs::write(folder.join("k"), "sha256:short 42 x").expect("write");
        assert_eq!(recall(&folder, "k"), None);
    }
}
