//! A RUN step's layer read straight from the overlay snapshot's upper folder.
//!
//! The overlay upper folder of an active snapshot holds exactly what the step changed: new and modified files
//! (with their parent folders), whiteouts (0/0 character devices) for deleted paths, and folders marked opaque
//! (`trusted.overlay.opaque=y`, or `user.overlay.opaque` for rootless overlay) where the step replaced a folder.
//! Walking it gives the layer without comparing the whole parent tree to the new one, which is what containerd's
//! diff service does (its cost grows with the image, not with the change: about a second per step on a Python
//! base here). Entries are written in path order as an OCI layer: whiteouts as `.wh.<name>`, opaque folders as
//! `.wh..wh..opq`, hard links within the layer as links, extended attributes (file capabilities) as PAX
//! records, sockets skipped (a tar cannot hold them), as containerd's own tar writer does. An entry whose contents
//! live in a lower layer (overlay's redirect_dir or metacopy, see [`super::overlay`]) stops the walk.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use super::copy::{HashingWriter, WrittenLayer, GZIP_LEVEL};
use super::overlay::{Redirected, REDIRECTS};
use crate::rootfs::OPAQUE;

/// Attribute namespaces overlay uses for itself; never part of the image.
const OVERLAY_PRIVATE: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// Writes the changes in `upper` as a gzip layer file in `dir`.
pub(crate) fn write_upper_layer(upper: &Path, dir: &Path) -> io::Result<WrittenLayer> {
    let path = dir.join("layer.tar.gz");
    let out = HashingWriter::new(io::BufWriter::with_capacity(1 << 20, File::create(&path)?));
    let gzip = flate2::GzBuilder::new()
        .mtime(0)
        .write(out, flate2::Compression::new(GZIP_LEVEL));
    let mut writer = LayerWriter {
        tar: tar::Builder::new(HashingWriter::new(gzip)),
        links: HashMap::new(),
    };
    writer.folder_contents(upper, "")?;
    let tar_hash = writer.tar.into_inner()?;
    let (gzip, diff_id) = tar_hash.finish();
    let (out, digest) = gzip.finish()?.finish();
    let file = out.into_inner().map_err(|e| e.into_error())?;
    file.sync_all()?;
    let size = std::fs::metadata(&path)?.len();
    Ok(WrittenLayer {
        path,
        digest,
        size,
        diff_id,
    })
}

struct LayerWriter<W: Write> {
    tar: tar::Builder<W>,
    /// Files with more than one link already written: (device, inode) -> path in the layer.
    links: HashMap<(u64, u64), String>,
}

impl<W: Write> LayerWriter<W> {
    /// Writes the entries of host folder `host` (the layer path `prefix`), sorted by name.
    fn folder_contents(&mut self, host: &Path, prefix: &str) -> io::Result<()> {
        let mut names: Vec<_> = std::fs::read_dir(host)?
            .map(|entry| entry.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let Some(name) = name.to_str() else {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}: a file name that is not UTF-8", host.display()),
                ));
            };
            let host = host.join(name);
            let path = format!("{prefix}{name}");
            self.entry(&host, &path)?;
        }
        Ok(())
    }

    fn entry(&mut self, host: &Path, path: &str) -> io::Result<()> {
        let meta = std::fs::symlink_metadata(host)?;
        let kind = meta.file_type();
        if kind.is_char_device() && meta.rdev() == 0 {
            return self.whiteout(path);
        }
        if kind.is_socket() {
            return Ok(());
        }
        let attributes = attributes(host)?;
        if let Some((attribute, _)) = attributes
            .iter()
            .find(|(k, _)| REDIRECTS.contains(&k.as_str()))
        {
            return Err(io::Error::other(Redirected {
                path: host.to_path_buf(),
                attribute: attribute.clone(),
            }));
        }
        if kind.is_dir() {
            let opaque = attributes
                .iter()
                .any(|(k, v)| OPAQUE.contains(&k.as_str()) && v.as_slice() == b"y");
            self.header(host, &format!("{path}/"), &meta, &attributes)?;
            if opaque {
                self.whiteout(&format!("{path}/.wh..wh..opq"))?;
            }
            return self.folder_contents(host, &format!("{path}/"));
        }
        if kind.is_file() && meta.nlink() > 1 {
            let key = (meta.dev(), meta.ino());
            if let Some(first) = self.links.get(&key) {
                let mut header = header(&meta, tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                self.pax(&attributes)?;
                return self.tar.append_link(&mut header, path, first);
            }
            self.links.insert(key, path.to_string());
        }
        self.header(host, path, &meta, &attributes)
    }

    /// An entry for `host` with its metadata (and contents, for a file).
    fn header(
        &mut self,
        host: &Path,
        path: &str,
        meta: &Metadata,
        attributes: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        self.pax(attributes)?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            let mut header = header(meta, tar::EntryType::Symlink);
            header.set_size(0);
            return self
                .tar
                .append_link(&mut header, path, std::fs::read_link(host)?);
        }
        let entry_type = if kind.is_dir() {
            tar::EntryType::Directory
        } else if kind.is_file() {
            tar::EntryType::Regular
        } else if kind.is_char_device() {
            tar::EntryType::Char
        } else if kind.is_block_device() {
            tar::EntryType::Block
        } else {
            tar::EntryType::Fifo
        };
        let mut header = header(meta, entry_type);
        if kind.is_char_device() || kind.is_block_device() {
            let rdev = meta.rdev();
            header.set_device_major(major(rdev))?;
            header.set_device_minor(minor(rdev))?;
        }
        if kind.is_file() {
            header.set_size(meta.len());
            self.tar.append_data(&mut header, path, File::open(host)?)
        } else {
            header.set_size(0);
            self.tar.append_data(&mut header, path, io::empty())
        }
    }

    /// A deleted path: an empty `.wh.`-prefixed file beside where it was.
    fn whiteout(&mut self, path: &str) -> io::Result<()> {
        let marker = match path.rsplit_once('/') {
            Some((_, name)) if name.starts_with(".wh.") => path.to_string(),
            Some((parent, name)) => format!("{parent}/.wh.{name}"),
            None => format!(".wh.{path}"),
        };
        let mut header = tar::Header::new_gnu();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(0);
        header.set_mtime(0);
        self.tar.append_data(&mut header, marker, io::empty())
    }

    /// The file's extended attributes as PAX `SCHILY.xattr.` records before its header.
    fn pax(&mut self, attributes: &[(String, Vec<u8>)]) -> io::Result<()> {
        let records: Vec<(String, &[u8])> = attributes
            .iter()
            .filter(|(k, _)| !OVERLAY_PRIVATE.iter().any(|p| k.starts_with(p)))
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        if records.is_empty() {
            return Ok(());
        }
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

/// A USTAR/GNU header with `meta`'s mode, owner and modification time.
fn header(meta: &Metadata, entry_type: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(meta.mode() & 0o7777);
    header.set_uid(u64::from(meta.uid()));
    header.set_gid(u64::from(meta.gid()));
    header.set_mtime(meta.mtime().max(0) as u64);
    header
}

/// The path's extended attributes, sorted by name (none where the file system keeps none).
fn attributes(host: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
    let names = match xattr::list(host) {
        Ok(names) => names,
        Err(e) if e.raw_os_error() == Some(95) => return Ok(Vec::new()), // EOPNOTSUPP
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for name in names {
        let Some(key) = name.to_str() else { continue };
        if let Some(value) = xattr::get(host, &name)? {
            out.push((key.to_string(), value));
        }
    }
    out.sort();
    Ok(out)
}

fn major(rdev: u64) -> u32 {
    (((rdev >> 32) & 0xffff_f000) | ((rdev >> 8) & 0x0000_0fff)) as u32
}

fn minor(rdev: u64) -> u32 {
    (((rdev >> 12) & 0xffff_ff00) | (rdev & 0x0000_00ff)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn entries(layer: &WrittenLayer) -> Vec<(String, tar::EntryType, String)> {
        let file = File::open(&layer.path).expect("layer");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                let mut e = e.expect("entry");
                let path = e.path().expect("path").to_string_lossy().into_owned();
                let kind = e.header().entry_type();
                let mut body = String::new();
                if kind == tar::EntryType::Link || kind == tar::EntryType::Symlink {
                    body = e
                        .link_name()
                        .expect("link")
                        .map(|l| l.to_string_lossy().into_owned())
                        .unwrap_or_default();
                } else {
                    e.read_to_string(&mut body).expect("body");
                }
                (path, kind, body)
            })
            .collect()
    }

    #[test]
    fn an_upper_folder_becomes_a_sorted_layer_with_links_kept() {
        let upper = tempfile::tempdir().expect("upper");
        let out = tempfile::tempdir().expect("out");
        let root = upper.path();
        std::fs::create_dir_all(root.join("etc/apt")).expect("dirs");
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        std::fs::write(root.join("etc/apt/b"), "b").expect("b");
        std::fs::hard_link(root.join("etc/apt/b"), root.join("etc/apt/a")).expect("link");
        std::os::unix::fs::symlink("passwd", root.join("etc/passwd-link")).expect("symlink");
        let layer = write_upper_layer(root, out.path()).expect("layer");
        let listed = entries(&layer);
        let names: Vec<&str> = listed.iter().map(|(p, _, _)| p.as_str()).collect();
        assert_eq!(
            names,
            [
                "etc/",
                "etc/apt/",
                "etc/apt/a",
                "etc/apt/b",
                "etc/passwd",
                "etc/passwd-link"
            ]
        );
        assert_eq!(listed[2].1, tar::EntryType::Regular);
        assert_eq!(listed[2].2, "b");
        assert_eq!(listed[3].1, tar::EntryType::Link);
        assert_eq!(listed[3].2, "etc/apt/a");
        assert_eq!(listed[5].1, tar::EntryType::Symlink);
        assert_eq!(listed[5].2, "passwd");
        assert!(layer.digest.starts_with("sha256:") && layer.diff_id.starts_with("sha256:"));
        assert_ne!(layer.digest, layer.diff_id);
    }

    #[test]
    fn whiteout_names_are_placed_beside_the_deleted_path() {
        let mut writer = LayerWriter {
            tar: tar::Builder::new(Vec::new()),
            links: HashMap::new(),
        };
        writer.whiteout("etc/motd").expect("whiteout");
        writer.whiteout("etc/.wh..wh..opq").expect("opaque");
        writer.whiteout("top").expect("top");
        let bytes = writer.tar.into_inner().expect("tar");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let names: Vec<String> = archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        assert_eq!(names, ["etc/.wh.motd", "etc/.wh..wh..opq", ".wh.top"]);
    }

    #[test]
    fn device_numbers_split_as_the_kernel_packs_them() {
        // glibc's makedev; (1, 3) is /dev/null, (4097, 65539) exercises the high bits of both
        let makedev = |major: u64, minor: u64| {
            ((major & 0xffff_f000) << 32)
                | ((major & 0xfff) << 8)
                | ((minor & 0xffff_ff00) << 12)
                | (minor & 0xff)
        };
        assert_eq!((major(makedev(1, 3)), minor(makedev(1, 3))), (1, 3));
        let big = makedev(4097, 65539);
        assert_eq!((major(big), minor(big)), (4097, 65539));
    }

    #[test]
    fn entries_whose_contents_are_below_stop_the_walk() {
        for attribute in ["trusted.overlay.metacopy", "trusted.overlay.redirect"] {
            let upper = tempfile::tempdir().expect("upper");
            let out = tempfile::tempdir().expect("out");
            std::fs::create_dir(upper.path().join("opt")).expect("mkdir");
            let entry = upper.path().join("opt/entry");
            std::fs::write(&entry, "").expect("write");
            xattr::set(&entry, attribute, b"").expect(
                "trusted xattrs need root (CAP_SYS_ADMIN), as berth's containerd builder does",
            );
            let err = write_upper_layer(upper.path(), out.path()).expect_err("incomplete upper");
            let redirected = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<Redirected>())
                .unwrap_or_else(|| panic!("not a redirect: {err}"));
            assert_eq!(
                (redirected.path.as_path(), redirected.attribute.as_str()),
                (entry.as_path(), attribute)
            );
        }
    }
}
