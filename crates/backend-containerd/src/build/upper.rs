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

use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

use berth_layer::entries::{attributes, EntryWriter, OPAQUE_MARKER};
use berth_layer::{LayerDigests, LayerStream};

use super::overlay::{Redirected, REDIRECTS};
use crate::rootfs::OPAQUE;

/// Attribute namespaces overlay uses for itself; never part of the image.
const OVERLAY_PRIVATE: [&str; 2] = ["trusted.overlay.", "user.overlay."];

/// Writes the changes in `upper` as a gzip layer to `out`: the writer and the layer's digests.
pub(crate) fn stream_upper_layer<W: Write + Send + 'static>(
    upper: &Path,
    out: W,
) -> io::Result<(W, LayerDigests)> {
    let mut layer = LayerStream::new(out)?;
    folder_contents(&mut EntryWriter::new(&mut layer.tar), upper, "")?;
    layer.finish()
}

/// Writes the entries of host folder `host` (the layer path `prefix`), sorted by name.
fn folder_contents<W: Write>(
    writer: &mut EntryWriter<'_, W>,
    host: &Path,
    prefix: &str,
) -> io::Result<()> {
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
        entry(writer, &host.join(name), &format!("{prefix}{name}"))?;
    }
    Ok(())
}

fn entry<W: Write>(writer: &mut EntryWriter<'_, W>, host: &Path, path: &str) -> io::Result<()> {
    let meta = std::fs::symlink_metadata(host)?;
    let kind = meta.file_type();
    if kind.is_char_device() && meta.rdev() == 0 {
        return writer.whiteout(path);
    }
    if kind.is_socket() {
        return Ok(());
    }
    let mut attributes = attributes(host)?;
    if let Some((attribute, _)) = attributes
        .iter()
        .find(|(k, _)| REDIRECTS.contains(&k.as_str()))
    {
        return Err(io::Error::other(Redirected {
            path: host.to_path_buf(),
            attribute: attribute.clone(),
        }));
    }
    let opaque = kind.is_dir()
        && attributes
            .iter()
            .any(|(k, v)| OPAQUE.contains(&k.as_str()) && v.as_slice() == b"y");
    attributes.retain(|(k, _)| !OVERLAY_PRIVATE.iter().any(|p| k.starts_with(p)));
    if kind.is_dir() {
        writer.entry(host, &format!("{path}/"), &meta, &attributes)?;
        if opaque {
            writer.whiteout(&format!("{path}/{OPAQUE_MARKER}"))?;
        }
        return folder_contents(writer, host, &format!("{path}/"));
    }
    writer.entry(host, path, &meta, &attributes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    fn entries(layer: &[u8]) -> Vec<(String, tar::EntryType, String)> {
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(layer));
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
        let root = upper.path();
        std::fs::create_dir_all(root.join("etc/apt")).expect("dirs");
        std::fs::write(root.join("etc/passwd"), "root:x:0:0::/root:/bin/sh\n").expect("passwd");
        std::fs::write(root.join("etc/apt/b"), "b").expect("b");
        std::fs::hard_link(root.join("etc/apt/b"), root.join("etc/apt/a")).expect("link");
        std::os::unix::fs::symlink("passwd", root.join("etc/passwd-link")).expect("symlink");
        let (bytes, layer) = stream_upper_layer(root, Vec::new()).expect("layer");
        let listed = entries(&bytes);
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
    fn entries_whose_contents_are_below_stop_the_walk() {
        for attribute in ["trusted.overlay.metacopy", "trusted.overlay.redirect"] {
            let upper = tempfile::tempdir().expect("upper");
            std::fs::create_dir(upper.path().join("opt")).expect("mkdir");
            let entry = upper.path().join("opt/entry");
            std::fs::write(&entry, "").expect("write");
            xattr::set(&entry, attribute, b"").expect(
                "trusted xattrs need root (CAP_SYS_ADMIN), as berth's containerd builder does",
            );
            let err = stream_upper_layer(upper.path(), Vec::new()).expect_err("incomplete upper");
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
