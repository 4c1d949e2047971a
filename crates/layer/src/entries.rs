//! Tar entries for files on the host and whiteouts for deleted paths, as an OCI layer holds them. Which paths a
//! layer holds is the engine's business (containerd walks an overlay upper folder, LXD compares the container's
//! root before and after a step); how each is written is the same: the host's mode, owner and modification time,
//! hard links within the layer as links, extended attributes (file capabilities) as PAX `SCHILY.xattr.` records,
//! sockets skipped (a tar cannot hold them), deleted paths as empty `.wh.<name>` files.

use std::collections::HashMap;
use std::fs::{File, Metadata};
use std::io::{self, Write};
use std::os::unix::fs::{FileTypeExt as _, MetadataExt as _};
use std::path::Path;

/// The name of the marker that makes a folder opaque (its lower contents hidden).
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// The id map of a user-namespaced container whose files are on the host under shifted ids: container id `n` is
/// host id `uid + n` (`gid + n`) for `n` below `range`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdShift {
    /// The host uid of the container's uid 0.
    pub uid: u32,
    /// The host gid of the container's gid 0.
    pub gid: u32,
    /// How many ids are mapped.
    pub range: u32,
}

impl IdShift {
    /// The container's id for host id `host` above `base`; an id outside the map is the overflow id (65534),
    /// as the container sees it.
    pub fn inside(host: u32, base: u32, range: u32) -> u32 {
        match host.checked_sub(base) {
            Some(n) if n < range => n,
            _ => 65_534,
        }
    }
}

/// Writes host files and whiteouts into a tar.
pub struct EntryWriter<'a, W: Write> {
    tar: &'a mut tar::Builder<W>,
    /// Files with more than one link already written: (device, inode) -> path in the layer.
    links: HashMap<(u64, u64), String>,
    /// Owners are written as the container sees them through this map.
    shift: Option<IdShift>,
}

impl<'a, W: Write> EntryWriter<'a, W> {
    /// Writes into `tar`.
    pub fn new(tar: &'a mut tar::Builder<W>) -> Self {
        EntryWriter {
            tar,
            links: HashMap::new(),
            shift: None,
        }
    }

    /// Writes owners as a user-namespaced container sees its files, not as the host does.
    pub fn shifted(mut self, shift: Option<IdShift>) -> Self {
        self.shift = shift;
        self
    }

    /// Writes host path `host` (whose `symlink_metadata` is `meta`) as layer path `path` (folders end in `/`),
    /// with `attributes` as PAX records. A file with several links whose (device, inode) this layer already
    /// holds becomes a hard link to it; a socket is skipped.
    pub fn entry(
        &mut self,
        host: &Path,
        path: &str,
        meta: &Metadata,
        attributes: &[(String, Vec<u8>)],
    ) -> io::Result<()> {
        match EntryMeta::of(host, meta)? {
            Some(described) => self.described(path, &described, attributes, || File::open(host)),
            None => Ok(()),
        }
    }

    /// Writes an entry described by `meta` (owners as the host has them, shifted as [`EntryWriter::shifted`]
    /// says) as layer path `path`, its contents (regular files only) from what `contents` opens. What
    /// [`EntryWriter::entry`] writes for a host file, it writes for the same description read elsewhere (an
    /// exported tar): one writer, the same bytes.
    pub fn described<R: io::Read>(
        &mut self,
        path: &str,
        meta: &EntryMeta,
        attributes: &[(String, Vec<u8>)],
        contents: impl FnOnce() -> io::Result<R>,
    ) -> io::Result<()> {
        if let Some(key) = meta.link_key {
            if let Some(first) = self.links.get(&key) {
                let mut header = header(meta, self.shift, tar::EntryType::Link);
                header.set_size(0);
                let first = first.clone();
                self.pax(attributes)?;
                return self.tar.append_link(&mut header, path, first);
            }
            self.links.insert(key, path.to_string());
        }
        self.pax(attributes)?;
        let entry_type = match &meta.kind {
            EntryKind::Symlink(target) => {
                let mut header = header(meta, self.shift, tar::EntryType::Symlink);
                header.set_size(0);
                return self.tar.append_link(&mut header, path, target);
            }
            EntryKind::Dir => tar::EntryType::Directory,
            EntryKind::File => tar::EntryType::Regular,
            EntryKind::Char => tar::EntryType::Char,
            EntryKind::Block => tar::EntryType::Block,
            EntryKind::Fifo => tar::EntryType::Fifo,
        };
        let mut header = header(meta, self.shift, entry_type);
        if matches!(meta.kind, EntryKind::Char | EntryKind::Block) {
            header.set_device_major(meta.device.0)?;
            header.set_device_minor(meta.device.1)?;
        }
        if matches!(meta.kind, EntryKind::File) {
            header.set_size(meta.size);
            self.tar.append_data(&mut header, path, contents()?)
        } else {
            header.set_size(0);
            self.tar.append_data(&mut header, path, io::empty())
        }
    }

    /// A deleted path: an empty `.wh.`-prefixed file beside where it was (a name that already is a marker, such
    /// as [`OPAQUE_MARKER`], is written as it is).
    pub fn whiteout(&mut self, path: &str) -> io::Result<()> {
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

    /// The attributes as PAX `SCHILY.xattr.` records before the next header.
    fn pax(&mut self, attributes: &[(String, Vec<u8>)]) -> io::Result<()> {
        if attributes.is_empty() {
            return Ok(());
        }
        let records: Vec<(String, &[u8])> = attributes
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), v.as_slice()))
            .collect();
        self.tar
            .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
    }
}

/// A USTAR/GNU header with `meta`'s mode, owner (through `shift`) and modification time.
fn header(meta: &EntryMeta, shift: Option<IdShift>, entry_type: tar::EntryType) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(meta.mode & 0o7777);
    let (uid, gid) = match shift {
        None => (meta.uid, meta.gid),
        Some(s) => (
            IdShift::inside(meta.uid, s.uid, s.range),
            IdShift::inside(meta.gid, s.gid, s.range),
        ),
    };
    header.set_uid(u64::from(uid));
    header.set_gid(u64::from(gid));
    header.set_mtime(meta.mtime.max(0) as u64);
    header
}

/// What kind of file an entry is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A folder.
    Dir,
    /// A symbolic link to this target.
    Symlink(std::path::PathBuf),
    /// A character device.
    Char,
    /// A block device.
    Block,
    /// A named pipe.
    Fifo,
}

/// An entry's description, as a host file's metadata or another tar's header gives it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Its kind.
    pub kind: EntryKind,
    /// Permission bits (with setuid, setgid and sticky).
    pub mode: u32,
    /// Owner, as the host has it.
    pub uid: u32,
    /// Group, as the host has it.
    pub gid: u32,
    /// Modification time, in seconds.
    pub mtime: i64,
    /// Size of a regular file's contents.
    pub size: u64,
    /// A device's major and minor numbers.
    pub device: (u32, u32),
    /// For a file with more than one name: what identifies the file (entries with the same key are one file,
    /// written once and linked to after).
    pub link_key: Option<(u64, u64)>,
}

impl EntryMeta {
    /// The description of host path `host` whose `symlink_metadata` is `meta`; `None` for a socket (a tar cannot
    /// hold one).
    pub fn of(host: &Path, meta: &Metadata) -> io::Result<Option<EntryMeta>> {
        let kind = meta.file_type();
        let kind = if kind.is_socket() {
            return Ok(None);
        } else if kind.is_dir() {
            EntryKind::Dir
        } else if kind.is_file() {
            EntryKind::File
        } else if kind.is_symlink() {
            EntryKind::Symlink(std::fs::read_link(host)?)
        } else if kind.is_char_device() {
            EntryKind::Char
        } else if kind.is_block_device() {
            EntryKind::Block
        } else {
            EntryKind::Fifo
        };
        let rdev = meta.rdev();
        Ok(Some(EntryMeta {
            link_key: (kind == EntryKind::File && meta.nlink() > 1)
                .then(|| (meta.dev(), meta.ino())),
            kind,
            mode: meta.mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
            mtime: meta.mtime(),
            size: meta.len(),
            device: (major(rdev), minor(rdev)),
        }))
    }
}

/// The path's extended attributes, sorted by name (none where the file system keeps none).
pub fn attributes(host: &Path) -> io::Result<Vec<(String, Vec<u8>)>> {
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

    #[test]
    fn whiteout_names_are_placed_beside_the_deleted_path() {
        let mut tar = tar::Builder::new(Vec::new());
        let mut writer = EntryWriter::new(&mut tar);
        writer.whiteout("etc/motd").expect("whiteout");
        writer.whiteout("etc/.wh..wh..opq").expect("opaque");
        writer.whiteout("top").expect("top");
        let bytes = tar.into_inner().expect("tar");
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
}
