//! A COPY layer's files written straight into the step's active snapshot while the layer is written.
//!
//! The other way, berth writes the gzip layer, containerd ingests it and its diff service reads it back, gunzips,
//! hashes and unpacks it into the snapshot: about 60% of a 1 GiB COPY's time was containerd's. A COPY only adds
//! folders and regular files, so berth can create them in the snapshot's upper folder itself, with the mode,
//! owner and times of the layer's tar headers (containerd's unpacker sets the same), in the pass that writes the
//! layer. The snapshot is then committed by chain id as a RUN step's is.
//!
//! This is done only where the result is certain to be what unpacking the layer gives: the snapshot is a host
//! folder (an overlay upper folder, or the native snapshotter's folder), its overlay does not write redirects, and
//! every folder above a copied file is either a real folder of the image or one the layer creates (a link or a file
//! on the way, which the unpacker resolves its own way, sends the step to the diff service). The image's folders
//! on the way are copied into the upper folder first with their mode, owner and extended attributes, as overlay's
//! copy-up (and containerd's unpacker) does. Every host path is opened through [`tree`], never following a link.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_layer::copy::{fixed_times, Unpack};
use rustix::fs::FileType;

use super::{names, tree, Found, RootfsView};

/// Attribute namespaces overlay keeps for itself: never copied up (an opaque mark would hide the folder below).
const OVERLAY_PRIVATE: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// The upper folder of an active snapshot that a COPY layer is unpacked into as it is written.
pub(crate) struct SnapshotUnpack {
    upper: PathBuf,
    /// The open folders along the last entry's path (relative names, fd), root first.
    open: Vec<(OsString, OwnedFd)>,
    root: OwnedFd,
    /// The folders the layer created, whose times are set once everything inside them is written.
    created: Vec<Vec<OsString>>,
}

impl SnapshotUnpack {
    /// Prepares `view` for the COPY of files under `folders` (every folder above them, absolute): copies the
    /// image's folders among them into the upper folder. `Err(why)` when the snapshot has no upper folder or a
    /// path on the way is one berth leaves to containerd's unpacker (the caller checks the overlay's options).
    pub(crate) fn prepare(
        view: &RootfsView,
        folders: &[String],
    ) -> io::Result<Result<SnapshotUnpack, String>> {
        let Some(upper) = view.upper() else {
            return Ok(Err("the snapshot has no upper folder".into()));
        };
        let mut existing = BTreeSet::new();
        for folder in folders {
            match view.lookup(folder) {
                Found::Dir => {
                    existing.insert(folder.as_str());
                }
                Found::Missing => {}
                // a link, file or device where the layer needs a folder: the unpacker decides
                Found::Link | Found::File(_) | Found::Other => {
                    return Ok(Err(format!("{folder} is not a folder in the image")))
                }
            }
        }
        // parents sort before their children, so each folder's parent is in the upper folder when it is copied
        for folder in existing {
            view.copy_up_dir(&names(Path::new(folder)).collect::<Vec<_>>())?;
        }
        Ok(Ok(SnapshotUnpack {
            upper: upper.to_path_buf(),
            open: Vec::new(),
            root: tree::open_root(upper)?,
            created: Vec::new(),
        }))
    }

    /// The open folder that holds layer path `name` (its parent folders exist), and `name`'s last component.
    fn parent_of(&mut self, name: &str) -> io::Result<(&OwnedFd, OsString)> {
        let mut parts: Vec<OsString> = names(Path::new(name)).collect();
        let Some(last) = parts.pop() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("`{name}` is not a path in the image"),
            ));
        };
        let common = self
            .open
            .iter()
            .zip(&parts)
            .take_while(|((open, _), part)| open == *part)
            .count();
        self.open.truncate(common);
        for part in &parts[common..] {
            let dir = tree::open_dir(self.open.last().map_or(&self.root, |(_, fd)| fd), part)?;
            self.open.push((part.clone(), dir));
        }
        Ok((self.open.last().map_or(&self.root, |(_, fd)| fd), last))
    }
}

/// The mode bits and owner a tar header gives.
fn mode_owner(header: &tar::Header) -> io::Result<(u32, (u32, u32))> {
    let id = |v: u64| {
        u32::try_from(v)
            .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "an id over 32 bits"))
    };
    Ok((
        header.mode()? & 0o7777,
        (id(header.uid()?)?, id(header.gid()?)?),
    ))
}

impl Unpack for SnapshotUnpack {
    fn folder(&mut self, name: &str, header: &tar::Header) -> io::Result<()> {
        let (mode, owner) = mode_owner(header)?;
        let (parent, last) = self.parent_of(name)?;
        tree::ensure_dir(parent, &last, mode, owner)?;
        self.created.push(names(Path::new(name)).collect());
        Ok(())
    }

    fn file(&mut self, name: &str, header: &tar::Header) -> io::Result<File> {
        let (mode, owner) = mode_owner(header)?;
        let (parent, last) = self.parent_of(name)?;
        tree::create_file(parent, &last, mode, owner)
    }

    fn finish(&mut self) -> io::Result<()> {
        self.open.clear();
        for path in &self.created {
            let dir = tree::open_path(&self.upper, path)?;
            File::from(dir).set_times(fixed_times())?;
        }
        Ok(())
    }
}

impl RootfsView {
    /// Copies folder `path` (link-free names of a folder of the image) into the upper folder with its mode, owner
    /// and extended attributes, unless the upper folder has it already; its parent must be there.
    fn copy_up_dir(&self, path: &[OsString]) -> io::Result<()> {
        let (Some(upper), Some((name, parents))) = (&self.upper, path.split_last()) else {
            return Ok(());
        };
        let parent = tree::open_path(upper, parents)?;
        if tree::lstat(&parent, name).is_ok() {
            return Ok(());
        }
        let Some((_, layer, stat)) = self.entry(path) else {
            return Err(io::ErrorKind::NotFound.into());
        };
        if tree::kind(&stat) != FileType::Directory {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                "a file is in the way",
            ));
        }
        let source = tree::open_path(layer, path)?;
        let created = tree::ensure_dir(&parent, name, stat.st_mode, (stat.st_uid, stat.st_gid))?;
        for attribute in tree::attributes(&source)? {
            let key = attribute.to_string_lossy();
            if !OVERLAY_PRIVATE.iter().any(|p| key.starts_with(p)) {
                tree::copy_attribute(&source, &created, &attribute)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::plan::ContextSource;
    use berth_layer::copy::{folders, write_layer_into, CopiedFile};
    use std::io::Read as _;
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};

    fn copied(target: &str, source: ContextSource, mode: u32) -> CopiedFile {
        let digest = berth_layer::copy::content_digest(&source).expect("digest");
        CopiedFile {
            target: target.into(),
            source,
            mode,
            digest,
        }
    }

    /// Every entry of the gzip layer at `layer` is in `upper` as the layer describes it.
    fn assert_unpacked(layer: &Path, upper: &Path) {
        let file = File::open(layer).expect("layer");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().expect("entries") {
            let mut entry = entry.expect("entry");
            let name = entry.path().expect("path").into_owned();
            let header = entry.header().clone();
            let host = upper.join(&name);
            let meta = std::fs::symlink_metadata(&host).expect("unpacked");
            let what = host.display();
            assert_eq!(meta.mode() & 0o7777, header.mode().expect("mode"), "{what}");
            assert_eq!(u64::from(meta.uid()), header.uid().expect("uid"), "{what}");
            assert_eq!(u64::from(meta.gid()), header.gid().expect("gid"), "{what}");
            assert_eq!(
                meta.mtime() as u64,
                header.mtime().expect("mtime"),
                "{what}"
            );
            if header.entry_type().is_dir() {
                assert!(meta.is_dir(), "{what}");
            } else {
                assert!(meta.is_file() && meta.nlink() == 1, "{what}");
                let mut bytes = Vec::new();
                entry.read_to_end(&mut bytes).expect("body");
                assert_eq!(std::fs::read(&host).expect("read"), bytes, "{what}");
            }
        }
    }

    #[test]
    fn a_copy_lands_in_the_upper_folder_as_its_layer_describes_it() {
        let lower = tempfile::tempdir().expect("lower");
        let upper = tempfile::tempdir().expect("upper");
        let out = tempfile::tempdir().expect("out");
        let opt = lower.path().join("opt");
        std::fs::create_dir(&opt).expect("mkdir");
        std::fs::set_permissions(&opt, std::fs::Permissions::from_mode(0o750)).expect("chmod");
        std::os::unix::fs::chown(&opt, Some(1000), Some(1001)).expect("chown (needs root)");
        xattr::set(&opt, "user.origin", b"base").expect("user xattr");
        xattr::set(&opt, "trusted.overlay.opaque", b"y").expect("trusted xattr (needs root)");
        std::fs::write(opt.join("kept"), "lower").expect("write");
        let source = out.path().join("tool");
        std::fs::write(&source, vec![7u8; 300_000]).expect("source");
        let files = vec![
            copied(
                "/opt/app/notes.txt",
                ContextSource::Bytes(b"notes".to_vec()),
                0o644,
            ),
            copied("/opt/app/sub/tool", ContextSource::File(source), 0o4755),
            copied("/opt/app-x", ContextSource::Bytes(Vec::new()), 0o600),
        ];
        let view = RootfsView::of_layers(
            vec![upper.path().to_path_buf(), lower.path().to_path_buf()],
            Some(upper.path().to_path_buf()),
        );
        let all = folders(&files);
        let missing: Vec<String> = all.iter().filter(|f| !view.exists(f)).cloned().collect();
        assert_eq!(missing, ["/opt/app", "/opt/app/sub"]);
        let mut unpack = SnapshotUnpack::prepare(&view, &all)
            .expect("prepare")
            .unwrap_or_else(|why| panic!("a plain folder tree is written directly: {why}"));
        let layer = write_layer_into(
            &files,
            &missing,
            (1234, 5678),
            out.path(),
            Some(&mut unpack),
        )
        .expect("layer");
        assert_unpacked(&layer.path, upper.path());
        // the image's folder was copied up with its mode, owner and attributes, but not overlay's own
        let copied_up = std::fs::metadata(upper.path().join("opt")).expect("copied up");
        assert_eq!(
            (copied_up.mode() & 0o7777, copied_up.uid(), copied_up.gid()),
            (0o750, 1000, 1001)
        );
        let up = upper.path().join("opt");
        assert_eq!(
            xattr::get(&up, "user.origin").expect("get"),
            Some(b"base".to_vec())
        );
        assert_eq!(
            xattr::get(&up, "trusted.overlay.opaque").expect("get"),
            None
        );
        assert!(
            !up.join("kept").exists(),
            "only the copied files are in the upper folder"
        );
        // the same layer as without unpacking
        let plain = tempfile::tempdir().expect("plain");
        let again = berth_layer::copy::write_layer(&files, &missing, (1234, 5678), plain.path())
            .expect("layer");
        assert_eq!((again.digest, again.diff_id), (layer.digest, layer.diff_id));
    }

    #[test]
    fn links_and_files_on_the_way_are_left_to_the_unpacker() {
        for make in [
            |p: &Path| std::os::unix::fs::symlink("usr/lib", p).expect("symlink"),
            |p: &Path| std::fs::write(p, "").expect("file"),
        ] {
            let lower = tempfile::tempdir().expect("lower");
            let upper = tempfile::tempdir().expect("upper");
            std::fs::create_dir_all(lower.path().join("usr/lib")).expect("mkdir");
            make(&lower.path().join("lib"));
            let view = RootfsView::of_layers(
                vec![upper.path().to_path_buf(), lower.path().to_path_buf()],
                Some(upper.path().to_path_buf()),
            );
            let folders = ["/lib".to_string(), "/lib/app".to_string()];
            let why = SnapshotUnpack::prepare(&view, &folders)
                .expect("prepare")
                .map(drop)
                .expect_err("left to the unpacker");
            assert_eq!(why, "/lib is not a folder in the image");
            assert_eq!(std::fs::read_dir(upper.path()).expect("upper").count(), 0);
        }
    }
}
