//! One host folder (a snapshot's layer or its upper folder) read and changed through file descriptors, never
//! following a symbolic link.
//!
//! Every path here is a list of plain names, opened one at a time with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` from the folder before it: a link that an image (or a RUN step) placed anywhere on the way
//! is an error, never a path on the host. Following links the way the image means them is [`super::RootfsView`]'s
//! job, done on top of these calls across all of a snapshot's layers.

use std::ffi::{OsStr, OsString};
use std::io::{self, Read as _};
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt as _;
use std::path::{Path, PathBuf};

use rustix::fs::{
    fchmod, fchown, fgetxattr, flistxattr, fsetxattr, mkdirat, openat2, readlinkat, statat,
    unlinkat, AtFlags, FileType, Gid, Mode, OFlags, ResolveFlags, Stat, Uid, XattrFlags, CWD,
};

/// Overlay's attributes for an opaque folder (rootful, then rootless overlay).
pub(crate) const OPAQUE: [&str; 2] = ["trusted.overlay.opaque", "user.overlay.opaque"];

/// How every name below a tree's root is resolved: inside the folder, no links of any kind.
const SCOPED: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);
/// A folder opened to look into (not `O_PATH`: its attributes are read through the descriptor).
const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The kind of an entry.
pub(crate) fn kind(stat: &Stat) -> FileType {
    FileType::from_raw_mode(stat.st_mode)
}

/// Whether `stat` is an overlay whiteout: a character device numbered 0/0 (any other device is a device).
pub(crate) fn is_whiteout(stat: &Stat) -> bool {
    kind(stat) == FileType::CharacterDevice && stat.st_rdev == 0
}

/// Opens the root of a tree (a host path berth got from containerd, so trusted as it is).
pub(crate) fn open_root(root: &Path) -> io::Result<OwnedFd> {
    openat2(CWD, root, DIR, Mode::empty(), ResolveFlags::empty()).map_err(io::Error::from)
}

/// Opens folder `name` of `dir`; a link there is an error.
pub(crate) fn open_dir(dir: &OwnedFd, name: &OsStr) -> io::Result<OwnedFd> {
    openat2(dir, plain(name)?, DIR, Mode::empty(), SCOPED).map_err(io::Error::from)
}

/// Opens the folder at `parents` below `root`, every step checked.
pub(crate) fn open_path(root: &Path, parents: &[OsString]) -> io::Result<OwnedFd> {
    let mut dir = open_root(root)?;
    for name in parents {
        dir = open_dir(&dir, name)?;
    }
    Ok(dir)
}

/// What `name` in `dir` is, without following it.
pub(crate) fn lstat(dir: &OwnedFd, name: &OsStr) -> io::Result<Stat> {
    statat(dir, plain(name)?, AtFlags::SYMLINK_NOFOLLOW).map_err(io::Error::from)
}

/// Where link `name` in `dir` points.
pub(crate) fn read_link(dir: &OwnedFd, name: &OsStr) -> io::Result<PathBuf> {
    let target = readlinkat(dir, plain(name)?, Vec::new())?;
    Ok(PathBuf::from(OsStr::from_bytes(target.as_bytes())))
}

/// The contents of regular file `name` in `dir`.
pub(crate) fn read_file(dir: &OwnedFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC | OFlags::NOCTTY;
    let fd = openat2(dir, plain(name)?, flags, Mode::empty(), SCOPED)?;
    let mut bytes = Vec::new();
    std::fs::File::from(fd).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether folder `dir` is marked opaque (it hides the layers below it).
pub(crate) fn is_opaque(dir: &OwnedFd) -> bool {
    OPAQUE.iter().any(|name| {
        let mut value = [0u8; 8];
        matches!(fgetxattr(dir, *name, &mut value), Ok(n) if value[..n] == *b"y")
    })
}

/// Opens folder `name` of `dir`, creating it first (with `mode` and owner `uid:gid`) when it is missing.
pub(crate) fn ensure_dir(
    dir: &OwnedFd,
    name: &OsStr,
    mode: u32,
    owner: (u32, u32),
) -> io::Result<OwnedFd> {
    match open_dir(dir, name) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        other => return other,
    }
    mkdirat(dir, plain(name)?, Mode::from_raw_mode(mode & 0o7777))?;
    let created = open_dir(dir, name)?;
    // mkdir's mode went through the umask
    set_owner_mode(&created, mode, owner)?;
    Ok(created)
}

/// Gives open file `fd` owner `uid:gid`, then `mode` (after the owner: chown clears set-id bits).
fn set_owner_mode(fd: &OwnedFd, mode: u32, owner: (u32, u32)) -> io::Result<()> {
    fchown(
        fd,
        Some(Uid::from_raw(owner.0)),
        Some(Gid::from_raw(owner.1)),
    )?;
    fchmod(fd, Mode::from_raw_mode(mode & 0o7777))?;
    Ok(())
}

/// Creates regular file `name` in `dir` (it must not exist) with `mode` and owner `uid:gid`, open for writing.
pub(crate) fn create_file(
    dir: &OwnedFd,
    name: &OsStr,
    mode: u32,
    owner: (u32, u32),
) -> io::Result<std::fs::File> {
    let flags = OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let fd = openat2(dir, plain(name)?, flags, Mode::from_raw_mode(0o600), SCOPED)?;
    set_owner_mode(&fd, mode, owner)?;
    Ok(std::fs::File::from(fd))
}

/// The names of the extended attributes of open file `fd`.
pub(crate) fn attributes(fd: &OwnedFd) -> io::Result<Vec<OsString>> {
    let mut list = vec![0u8; 1024];
    loop {
        match flistxattr(fd, &mut list) {
            Ok(n) => {
                return Ok(list[..n]
                    .split(|b| *b == 0)
                    .filter(|name| !name.is_empty())
                    .map(|name| OsStr::from_bytes(name).to_os_string())
                    .collect())
            }
            Err(rustix::io::Errno::RANGE) if list.len() < 1 << 16 => list.resize(list.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Copies extended attribute `name` of open file `from` to `to`.
pub(crate) fn copy_attribute(from: &OwnedFd, to: &OwnedFd, name: &OsStr) -> io::Result<()> {
    let mut value = vec![0u8; 1024];
    let n = loop {
        match fgetxattr(from, name, &mut value) {
            Ok(n) => break n,
            Err(rustix::io::Errno::RANGE) if value.len() < 1 << 16 => {
                value.resize(value.len() * 4, 0)
            }
            Err(e) => return Err(e.into()),
        }
    };
    fsetxattr(to, name, &value[..n], XattrFlags::empty())?;
    Ok(())
}

/// Removes the empty folder or empty regular file at `path` below `root`; false when it is anything else, is
/// gone, or a link stands on the way.
pub(crate) fn remove_empty(root: &Path, path: &[OsString]) -> bool {
    let Some((name, parents)) = path.split_last() else {
        return false;
    };
    let Ok(dir) = open_path(root, parents) else {
        return false;
    };
    let Ok(stat) = lstat(&dir, name) else {
        return false;
    };
    let flags = match kind(&stat) {
        FileType::Directory => AtFlags::REMOVEDIR,
        FileType::RegularFile if stat.st_size == 0 => AtFlags::empty(),
        _ => return false,
    };
    unlinkat(&dir, name, flags).is_ok()
}

/// `name` as one plain path component: never empty, `.`, `..` or containing `/`.
fn plain(name: &OsStr) -> io::Result<&OsStr> {
    let bytes = name.as_bytes();
    if bytes.is_empty() || bytes == b"." || bytes == b".." || bytes.contains(&b'/') {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{}` is not a plain file name", name.to_string_lossy()),
        ));
    }
    Ok(name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt as _;

    #[test]
    fn links_on_the_way_are_refused() {
        let root = tempfile::tempdir().expect("root");
        let outside = tempfile::tempdir().expect("outside");
        std::fs::create_dir(outside.path().join("sub")).expect("mkdir");
        std::fs::write(outside.path().join("sub/file"), "host").expect("write");
        std::os::unix::fs::symlink(outside.path(), root.path().join("link")).expect("symlink");
        let names = |p: &[&str]| p.iter().map(OsString::from).collect::<Vec<_>>();
        assert!(open_path(root.path(), &names(&["link", "sub"])).is_err());
        let dir = open_root(root.path()).expect("root");
        assert!(read_file(&dir, OsStr::new("link")).is_err());
        assert!(ensure_dir(&dir, OsStr::new("link"), 0o755, (0, 0)).is_err());
        assert!(!remove_empty(root.path(), &names(&["link", "sub"])));
        assert!(outside.path().join("sub/file").exists());
        assert!(lstat(&dir, OsStr::new("..")).is_err());
        assert!(lstat(&dir, OsStr::new("a/b")).is_err());
    }

    #[test]
    fn ensure_dir_sets_the_mode_through_the_umask() {
        let root = tempfile::tempdir().expect("root");
        let dir = open_root(root.path()).expect("root");
        let meta = std::fs::metadata(root.path()).expect("stat");
        let owner = (meta.uid(), meta.gid());
        ensure_dir(&dir, OsStr::new("tmp"), 0o1777, owner).expect("mkdir");
        let stat = lstat(&dir, OsStr::new("tmp")).expect("stat");
        assert_eq!(stat.st_mode & 0o7777, 0o1777);
        assert!(remove_empty(root.path(), &[OsString::from("tmp")]));
    }
}
