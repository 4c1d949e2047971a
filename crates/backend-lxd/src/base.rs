//! Root folders from OCI layers, and the base image as an LXD image.
//!
//! [`unpack_layer`] applies one gzip layer to a folder as a container runtime does: whiteouts remove what lower
//! layers made, an opaque marker empties its folder, the other entries are written with their owners, modes,
//! times and extended attributes. The base of a build is unpacked once into a unified LXD image tarball
//! (`metadata.yaml` and `rootfs/`) and imported under the alias `berth-base-<manifest hex>`, so later builds on
//! the same base find it in LXD.

use std::fs::{self, File};
use std::io;
use std::path::{Component, Path, PathBuf};

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::{ErrorKind, Operation, Result};
use berth_layer::entries::{IdShift, OPAQUE_MARKER};
use http::Method;
use serde_json::json;

use crate::client::Body;
use crate::errors::{error, io_error};
use crate::store::{LocalImage, Store};
use crate::LxdEngine;

/// Applies gzip layer `layer` to folder `root`; with `shift`, the root folder of a started unprivileged
/// container, owners go on disk as its id map puts them (LXD shifts the rest when the container first starts).
pub(crate) fn unpack_layer(root: &Path, layer: &Path, shift: Option<IdShift>) -> io::Result<()> {
    let file = File::open(layer)?;
    let mut archive =
        tar::Archive::new(flate2::read::MultiGzDecoder::new(io::BufReader::new(file)));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_unpack_xattrs(true);
    archive.set_overwrite(true);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let path = entry.path()?.into_owned();
        if path.components().any(|c| matches!(c, Component::ParentDir)) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("layer entry {} leaves the root", path.display()),
            ));
        }
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        let parent = root.join(path.parent().unwrap_or(Path::new("")));
        if name == OPAQUE_MARKER {
            for child in fs::read_dir(&parent)? {
                remove_any(&child?.path())?;
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            remove_any(&parent.join(hidden))?;
            continue;
        }
        let target = root.join(&path);
        if let Ok(existing) = fs::symlink_metadata(&target) {
            // a folder replaced by anything else, or anything replaced by a folder, goes first
            if existing.is_dir() != entry.header().entry_type().is_dir() {
                remove_any(&target)?;
            }
        }
        entry.unpack_in(root)?;
        if let Some(shift) = shift {
            let owner = |id: u64, base: u32| {
                u32::try_from(id)
                    .ok()
                    .filter(|id| *id < shift.range)
                    .map(|id| base + id)
            };
            let header = entry.header();
            if let (Some(uid), Some(gid)) = (
                owner(header.uid()?, shift.uid),
                owner(header.gid()?, shift.gid),
            ) {
                rustix::fs::chownat(
                    rustix::fs::CWD,
                    &target,
                    Some(rustix::fs::Uid::from_raw(uid)),
                    Some(rustix::fs::Gid::from_raw(gid)),
                    rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
        }
    }
    Ok(())
}

/// Removes a file, link or folder tree; nothing if it is absent.
pub(crate) fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Unpacks every layer of `image` into `root` (created), in order.
pub(crate) fn unpack_image(
    store: &Store,
    image: &LocalImage,
    root: &Path,
    op: Operation,
) -> Result<()> {
    fs::create_dir_all(root).map_err(|e| io_error(op, root.display(), e))?;
    for layer in image.layers() {
        let digest = layer["digest"].as_str().unwrap_or_default();
        let path = store.blob_path(digest, op)?;
        unpack_layer(root, &path, None)
            .map_err(|e| io_error(op, format!("unpacking layer {digest}"), e))?;
    }
    Ok(())
}

/// The start of the LXD alias of a base, before its manifest digest's hex.
pub(crate) const ALIAS_PREFIX: &str = "berth-base-";

/// The LXD alias of `image` as a base, with the layers whose blob digests are `above` on top of it.
fn alias(image: &LocalImage, above: &[String]) -> String {
    if above.is_empty() {
        return format!(
            "{ALIAS_PREFIX}{}",
            image.manifest_digest.trim_start_matches("sha256:")
        );
    }
    let chain = std::iter::once(image.manifest_digest.as_str())
        .chain(above.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join("\n");
    format!(
        "{ALIAS_PREFIX}{}",
        berth_layer::oci::sha256(chain.as_bytes()).trim_start_matches("sha256:")
    )
}

/// The file that says this state folder imported LXD image `alias`, modified whenever a build uses it (what
/// [`crate::prune`] goes by).
pub(crate) fn import_record(state_dir: &Path, alias: &str) -> PathBuf {
    state_dir.join("imported").join(alias)
}

/// The LXD image for base `image` with the store's layers `above` on top (a remote server's build starting after
/// cached steps: its root folder cannot be written from here), imported on first use; returns its alias.
pub(crate) async fn lxd_image(
    engine: &LxdEngine,
    store: &Store,
    image: &LocalImage,
    above: &[String],
    work: &Path,
    progress: &dyn Progress,
) -> Result<String> {
    let op = Operation::Build;
    let alias = alias(image, above);
    let path = format!("/1.0/images/aliases/{alias}");
    // one import per base at a time: two builds on a new base wait for one import
    let lock_path = engine.state_dir.join(format!("{alias}.lock"));
    let lock = File::create(&lock_path).map_err(|e| io_error(op, lock_path.display(), e))?;
    let lock = tokio::task::spawn_blocking(move || {
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::LockExclusive).map(|()| lock)
    })
    .await
    .map_err(|e| error(ErrorKind::Io, op, format!("waiting for {alias}: {e}")))?
    .map_err(|e| io_error(op, lock_path.display(), e.into()))?;
    let record = import_record(&engine.state_dir, &alias);
    match engine.lxd.call(op, Method::GET, &path, None).await {
        Ok(_) => {
            crate::prune::touch(&record);
            return Ok(alias);
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    progress.event(ProgressEvent::Line(format!(
        "importing the base into LXD as {alias}"
    )));
    let tarball = work.join("base.tar");
    let (store_c, image_c, dir, tarball_c) = (
        store.clone(),
        image.clone(),
        work.join("base"),
        tarball.clone(),
    );
    let architecture = engine.architecture.clone();
    let above = above.to_vec();
    tokio::task::spawn_blocking(move || {
        unified_tarball(&store_c, &image_c, &above, &architecture, &dir, &tarball_c)
    })
    .await
    .map_err(|e| error(ErrorKind::Io, op, format!("unpacking the base: {e}")))??;
    let imported = engine
        .lxd
        .send(
            op,
            Method::POST,
            "/1.0/images",
            &[("Content-Type", "application/octet-stream".to_string())],
            Body::File(tarball.clone()),
        )
        .await;
    let _ = fs::remove_file(&tarball);
    let fingerprint = imported?["fingerprint"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let body = json!({"name": alias, "target": fingerprint, "description": "berth build base"});
    engine
        .lxd
        .call(op, Method::POST, "/1.0/images/aliases", Some(&body))
        .await?;
    let written = fs::create_dir_all(record.parent().unwrap_or(&engine.state_dir))
        .and_then(|()| fs::write(&record, &fingerprint));
    written.map_err(|e| io_error(op, record.display(), e))?;
    drop(lock);
    Ok(alias)
}

/// Writes the unified image tarball of `image` with layers `above` (`metadata.yaml` and `rootfs/`) for a server
/// of `architecture` at `out`, unpacking into `dir`.
fn unified_tarball(
    store: &Store,
    image: &LocalImage,
    above: &[String],
    architecture: &str,
    dir: &Path,
    out: &Path,
) -> Result<()> {
    let op = Operation::Build;
    let rootfs: PathBuf = dir.join("rootfs");
    unpack_image(store, image, &rootfs, op)?;
    for digest in above {
        let path = store.blob_path(digest, op)?;
        unpack_layer(&rootfs, &path, None)
            .map_err(|e| io_error(op, format!("unpacking layer {digest}"), e))?;
    }
    // the server's own name for its architecture (the kernel's: x86_64, aarch64, ppc64le)
    let arch = architecture;
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let metadata = format!(
        "architecture: {arch}\ncreation_date: {created}\nproperties:\n  description: berth base {}\n",
        image.manifest_digest
    );
    let write = || -> io::Result<()> {
        let mut tar = tar::Builder::new(io::BufWriter::new(File::create(out)?));
        tar.follow_symlinks(false);
        let mut header = tar::Header::new_gnu();
        header.set_size(metadata.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(created);
        tar.append_data(&mut header, "metadata.yaml", metadata.as_bytes())?;
        tar.append_dir_all("rootfs", &rootfs)?;
        tar.into_inner()?
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()
    };
    let written = write().map_err(|e| io_error(op, out.display(), e));
    let _ = fs::remove_dir_all(dir);
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_layer::entries::EntryWriter;
    use berth_layer::LayerFile;

    #[test]
    fn whiteouts_and_opaque_folders_hide_lower_layers() {
        let root = tempfile::tempdir().expect("root");
        let r = root.path();
        fs::create_dir_all(r.join("srv/tree")).expect("dirs");
        fs::write(r.join("srv/gone"), "x").expect("gone");
        fs::write(r.join("srv/tree/old"), "x").expect("old");
        let src = tempfile::tempdir().expect("src");
        fs::create_dir(src.path().join("tree")).expect("tree");
        fs::write(src.path().join("tree/new"), "n").expect("new");
        let out = tempfile::tempdir().expect("out");
        let mut layer = LayerFile::create(&out.path().join("l.tar.gz")).expect("layer");
        {
            let mut w = EntryWriter::new(&mut layer.tar);
            w.whiteout("srv/gone").expect("whiteout");
            let tree = src.path().join("tree");
            let meta = fs::symlink_metadata(&tree).expect("meta");
            w.entry(&tree, "srv/tree/", &meta, &[]).expect("dir");
            w.whiteout(&format!("srv/tree/{OPAQUE_MARKER}"))
                .expect("opaque");
            let new = tree.join("new");
            let meta = fs::symlink_metadata(&new).expect("meta");
            w.entry(&new, "srv/tree/new", &meta, &[]).expect("file");
        }
        let written = layer.finish().expect("finish");
        unpack_layer(r, &written.path, None).expect("unpack");
        assert!(!r.join("srv/gone").exists());
        assert!(!r.join("srv/tree/old").exists());
        assert_eq!(
            fs::read_to_string(r.join("srv/tree/new")).expect("new"),
            "n"
        );
    }
}
