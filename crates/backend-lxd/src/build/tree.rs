//! What a RUN step changed in the container's root folder, as a layer.
//!
//! Before a step berth records every path's metadata ([`scan`]); after it, it scans again and writes the paths
//! that are new or whose metadata differs ([`write_changes`]). The inode's change time is part of it: the
//! kernel updates it on every write, chmod, chown or link, and no program can set it, so an unchanged entry is
//! one nothing touched. A folder whose inode changed was removed and made again: it is written opaque (its
//! lower contents hidden). A path that is gone is a whiteout, unless its parent went too. Parent folders of
//! written paths are written with them. Files keep the owners the container sees: the build container is
//! unprivileged, its files are on disk under the host ids its id map gives, and the layer takes them back.

use std::collections::BTreeMap;
use std::fs::Metadata;
use std::io;
use std::os::unix::fs::MetadataExt as _;
use std::path::Path;

use berth_layer::entries::{attributes, EntryKind, EntryMeta, EntryWriter, IdShift, OPAQUE_MARKER};
use berth_layer::{LayerFile, WrittenLayer};

/// The metadata of one path that tells whether it changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stat {
    ino: u64,
    mode: u32,
    uid: u32,
    gid: u32,
    size: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    rdev: u64,
    /// What an export's entry holds beyond its header (contents, link target, extended attributes, the other
    /// names of a hard-linked file): an export has neither inodes nor change times ([`super::export`]).
    content: Option<[u8; 32]>,
}

impl Stat {
    fn of(meta: &Metadata) -> Stat {
        Stat {
            ino: meta.ino(),
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
            size: meta.size(),
            mtime: (meta.mtime(), meta.mtime_nsec()),
            ctime: (meta.ctime(), meta.ctime_nsec()),
            rdev: meta.rdev(),
            content: None,
        }
    }

    /// The metadata of an exported entry: `mode` with its type bits, `content` as [`Stat::content`] says.
    pub(crate) fn exported(
        mode: u32,
        (uid, gid): (u32, u32),
        size: u64,
        mtime: i64,
        rdev: u64,
        content: [u8; 32],
    ) -> Stat {
        Stat {
            ino: 0,
            mode,
            uid,
            gid,
            size,
            mtime: (mtime, 0),
            ctime: (0, 0),
            rdev,
            content: Some(content),
        }
    }

    fn is_dir(&self) -> bool {
        self.mode & 0o170000 == 0o040000
    }
}

/// Every path below a root (relative, `/`-separated, without the root itself).
pub(crate) type Tree = BTreeMap<String, Stat>;

/// Records the tree below `root`, not following symlinks; names that are not UTF-8 are refused.
pub(crate) fn scan(root: &Path) -> io::Result<Tree> {
    let mut tree = Tree::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(root.join(&dir))? {
            let entry = entry?;
            let name = entry.file_name().into_string().map_err(|name| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{dir}/{}: a file name that is not UTF-8",
                        name.to_string_lossy()
                    ),
                )
            })?;
            let path = if dir.is_empty() {
                name
            } else {
                format!("{dir}/{name}")
            };
            let meta = std::fs::symlink_metadata(entry.path())?;
            if meta.is_dir() {
                pending.push(path.clone());
            }
            tree.insert(path, Stat::of(&meta));
        }
    }
    Ok(tree)
}

/// What to write for one path.
enum Change {
    /// The entry as it is now (`true`: a replaced folder, written opaque).
    Entry(bool),
    Whiteout,
}

/// The changes from `before` to `after`, in layer order.
fn changes(before: &Tree, after: &Tree) -> BTreeMap<String, Change> {
    let mut out = BTreeMap::new();
    for (path, stat) in after {
        let old = before.get(path);
        if old == Some(stat) {
            continue;
        }
        let replaced = stat.is_dir() && old.is_some_and(|o| o.is_dir() && o.ino != stat.ino);
        out.insert(path.clone(), Change::Entry(replaced));
        // parents come along, unchanged ones as they are
        let mut parent = path.as_str();
        while let Some((up, _)) = parent.rsplit_once('/') {
            out.entry(up.to_string()).or_insert(Change::Entry(false));
            parent = up;
        }
    }
    for path in before.keys().filter(|p| !after.contains_key(*p)) {
        let kept_parent = match path.rsplit_once('/') {
            None => true,
            Some((up, _)) => {
                matches!((before.get(up), after.get(up)), (Some(b), Some(a)) if a.ino == b.ino)
            }
        };
        if kept_parent {
            out.insert(path.clone(), Change::Whiteout);
        }
    }
    out
}

/// Where the entries of a layer are read from: the container's root folder on this machine ([`Folder`]) or an
/// export of it through LXD's API ([`super::export::Export`]). Both describe an entry the same way and one
/// writer writes it, so the same changes give the same layer.
pub(crate) trait Source {
    /// The entry at `path` now and its extended attributes (sorted by name); `None` for what a layer cannot
    /// hold (a socket).
    fn describe(&self, path: &str) -> io::Result<Option<Described>>;
    /// A regular file's contents.
    fn open(&self, path: &str) -> io::Result<Box<dyn io::Read + '_>>;
}

/// An entry's description and extended attributes.
pub(crate) type Described = (EntryMeta, Vec<(String, Vec<u8>)>);

/// The container's root folder on this machine.
pub(crate) struct Folder<'a>(pub(crate) &'a Path);

impl Source for Folder<'_> {
    fn describe(&self, path: &str) -> io::Result<Option<Described>> {
        let host = self.0.join(path);
        let meta = std::fs::symlink_metadata(&host)?;
        match EntryMeta::of(&host, &meta)? {
            Some(described) => Ok(Some((described, attributes(&host)?))),
            None => Ok(None),
        }
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn io::Read + '_>> {
        Ok(Box::new(std::fs::File::open(self.0.join(path))?))
    }
}

/// Writes the changes from `before` to `after` (the tree `source` holds now) as a gzip layer at `out`.
pub(crate) fn write_changes(
    source: &dyn Source,
    before: &Tree,
    after: &Tree,
    shift: Option<IdShift>,
    out: &Path,
) -> io::Result<WrittenLayer> {
    let mut layer = LayerFile::create(out)?;
    let mut writer = EntryWriter::new(&mut layer.tar).shifted(shift);
    for (path, change) in changes(before, after) {
        match change {
            Change::Whiteout => writer.whiteout(&path)?,
            Change::Entry(opaque) => {
                let Some((meta, mut found)) = source.describe(&path)? else {
                    continue;
                };
                let name = if meta.kind == EntryKind::Dir {
                    format!("{path}/")
                } else {
                    path.clone()
                };
                if let Some(shift) = shift {
                    unshift_capabilities(&mut found, shift);
                }
                writer.described(&name, &meta, &found, || source.open(&path))?;
                if opaque {
                    writer.whiteout(&format!("{path}/{OPAQUE_MARKER}"))?;
                }
            }
        }
    }
    drop(writer);
    layer.finish()
}

/// File capabilities set by the root of a user namespace are stored for that namespace only (version 3, with the
/// host id of its root); the layer holds them as set by any root (version 2), as a privileged build's would be,
/// so they work wherever the image runs.
fn unshift_capabilities(attributes: &mut [(String, Vec<u8>)], shift: IdShift) {
    const V3_SIZE: usize = 24;
    for (name, value) in attributes.iter_mut() {
        // magic_etc (little-endian: the version in its last byte), four masks, then the root id
        if name == "security.capability" && value.len() == V3_SIZE && value[3] == 0x03 {
            let root = u32::from_le_bytes([value[20], value[21], value[22], value[23]]);
            if root == shift.uid {
                value.truncate(20);
                value[3] = 0x02;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    fn names(root: &Path, before: &Tree) -> Vec<String> {
        let after = scan(root).expect("after");
        let out = tempfile::tempdir().expect("out");
        let layer = write_changes(
            &Folder(root),
            before,
            &after,
            None,
            &out.path().join("l.tar.gz"),
        )
        .expect("layer");
        let file = fs::File::open(&layer.path).expect("open");
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        archive
            .entries()
            .expect("entries")
            .map(|e| {
                e.expect("entry")
                    .path()
                    .expect("path")
                    .to_string_lossy()
                    .into_owned()
            })
            .collect()
    }

    #[test]
    fn namespaced_capabilities_become_any_roots() {
        let shift = IdShift {
            uid: 165536,
            gid: 165536,
            range: 65536,
        };
        let v3 = |root: u32| {
            let mut v = vec![
                0x01, 0, 0, 0x03, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            ];
            v.extend_from_slice(&root.to_le_bytes());
            v
        };
        let mut found = vec![
            ("security.capability".to_string(), v3(165536)),
            ("user.other".to_string(), v3(165536)),
        ];
        unshift_capabilities(&mut found, shift);
        assert_eq!(
            found[0].1,
            [0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]
        );
        assert_eq!(found[1].1, v3(165536), "only file capabilities change");
        // another namespace's capabilities stay theirs
        let mut other = vec![("security.capability".to_string(), v3(5000))];
        unshift_capabilities(&mut other, shift);
        assert_eq!(other[0].1, v3(5000));
    }

    #[test]
    fn changes_deletions_and_replaced_folders() {
        let dir = tempfile::tempdir().expect("root");
        let r = dir.path();
        fs::create_dir_all(r.join("srv/tree/sub")).expect("dirs");
        fs::create_dir_all(r.join("etc")).expect("etc");
        fs::write(r.join("etc/untouched"), "u").expect("u");
        fs::write(r.join("srv/gone"), "g").expect("g");
        fs::write(r.join("srv/tree/sub/b"), "b").expect("b");
        fs::write(r.join("srv/x"), "x").expect("x");
        let before = scan(r).expect("before");
        fs::remove_file(r.join("srv/gone")).expect("rm");
        fs::remove_dir_all(r.join("srv/tree")).expect("rm tree");
        fs::create_dir(r.join("srv/tree")).expect("mkdir");
        fs::write(r.join("srv/tree/c"), "c").expect("c");
        let mut perms = fs::metadata(r.join("srv/x")).expect("x").permissions();
        std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o4755);
        fs::set_permissions(r.join("srv/x"), perms).expect("chmod");
        let names = names(r, &before);
        let has = |n: &str| names.iter().any(|x| x == n);
        for expected in ["srv/", "srv/.wh.gone", "srv/tree/", "srv/tree/c", "srv/x"] {
            assert!(has(expected), "{expected} missing from {names:?}");
        }
        // the new folder may reuse the old one's inode: then its old child is a whiteout, else it is opaque
        assert!(
            has("srv/tree/.wh..wh..opq") || has("srv/tree/.wh.sub"),
            "{names:?}"
        );
        assert!(
            !names.iter().any(|n| n.starts_with("etc")),
            "untouched paths written: {names:?}"
        );
    }
}
