//! Looking into a snapshot from the host, without mounting it.
//!
//! containerd runs on this machine (berth reaches it over a unix socket), and its overlay and native snapshotters
//! describe a snapshot as host folders: `overlay` mounts with `upperdir=` and `lowerdir=a:b:...`, or a `bind`
//! of one folder. Reading those folders top-down answers what berth needs before a step runs: the user database
//! (`/etc/passwd`, `/etc/group`) to resolve `USER name`, which paths exist (so a COPY layer adds only missing
//! parent folders, and mount points that runc creates can be removed again before the layer is taken), and the
//! host path of a helper image's file to bind-mount. Overlay whiteouts (0/0 character devices) and opaque folders
//! hide what is below them.
//!
//! The image is not trusted: its symbolic links are followed here, component by component, against the image's
//! own root and across its layers (as the kernel's overlay would show them to the step), and every host folder is
//! then entered through [`tree`], which refuses any link. A link to `/etc` or `../../..` never reaches the host's
//! files. berth writes into the snapshot in two places, the working folder it creates before a step and the
//! mount points it removes after, and both go through the same resolution.

mod tree;
mod unpack;
mod user;

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{FileType, Stat};

use crate::convert::MountSpec;

pub(crate) use tree::OPAQUE;
pub(crate) use unpack::SnapshotUnpack;
pub(crate) use user::{resolve_user, User};

/// Links followed in one lookup before it gives up (Linux's own limit).
const MAX_LINKS: usize = 40;

/// A snapshot's folders, top first; `upper` is where an active snapshot's changes go.
#[derive(Debug, Clone)]
pub(crate) struct RootfsView {
    layers: Vec<PathBuf>,
    upper: Option<PathBuf>,
}

/// What a path is in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing there (or hidden by a whiteout, or behind a link that leads nowhere).
    Missing,
    /// A folder.
    Dir,
    /// A regular file at this host path (with no link on the way).
    File(PathBuf),
    /// A symbolic link.
    Link,
    /// Something else (device, socket).
    Other,
}

/// Where resolving a path inside the image ended.
enum Walk {
    /// It exists: its link-free names, and the layer (index) and entry that show it.
    Found(Vec<OsString>, usize, Stat),
    /// It does not: the deepest folder that exists (link-free names) and the names missing below it.
    Missing(Vec<OsString>, Vec<OsString>),
    /// It cannot: a file in the middle, or too many links.
    Broken,
}

impl RootfsView {
    /// The view of `mounts`, when they are host folders berth can read (`overlay` or `bind`).
    pub(crate) fn from_mounts(mounts: &[MountSpec]) -> Option<RootfsView> {
        let [mount] = mounts else {
            return (mounts.is_empty()).then(|| RootfsView {
                layers: Vec::new(),
                upper: None,
            });
        };
        match mount.kind.as_str() {
            "bind" | "rbind" => {
                let dir = PathBuf::from(&mount.source);
                let writable = !mount.options.iter().any(|o| o == "ro");
                Some(RootfsView {
                    layers: vec![dir.clone()],
                    upper: writable.then_some(dir),
                })
            }
            "overlay" => {
                let mut upper = None;
                let mut lower = Vec::new();
                for option in &mount.options {
                    if let Some(dir) = option.strip_prefix("upperdir=") {
                        upper = Some(PathBuf::from(dir));
                    } else if let Some(dirs) = option.strip_prefix("lowerdir=") {
                        lower.extend(dirs.split(':').map(PathBuf::from));
                    }
                }
                let mut layers: Vec<PathBuf> = upper.iter().cloned().collect();
                layers.extend(lower);
                Some(RootfsView { layers, upper })
            }
            _ => None,
        }
    }

    /// A view of `layers` (top first) with changes going to `upper`.
    #[cfg(test)]
    pub(crate) fn of_layers(layers: Vec<PathBuf>, upper: Option<PathBuf>) -> RootfsView {
        RootfsView { layers, upper }
    }

    /// The folder an active snapshot's changes go to.
    pub(crate) fn upper(&self) -> Option<&Path> {
        self.upper.as_deref()
    }

    /// What `path` (absolute inside the image) is, without following a final symlink.
    pub(crate) fn lookup(&self, path: &str) -> Found {
        match self.walk(path, false) {
            Walk::Found(names, layer, stat) => match tree::kind(&stat) {
                FileType::Directory => Found::Dir,
                FileType::RegularFile => {
                    Found::File(self.layers[layer].join(names.iter().collect::<PathBuf>()))
                }
                FileType::Symlink => Found::Link,
                _ => Found::Other,
            },
            Walk::Missing(..) | Walk::Broken => Found::Missing,
        }
    }

    /// Whether `path` exists.
    pub(crate) fn exists(&self, path: &str) -> bool {
        self.lookup(path) != Found::Missing
    }

    /// The host path of the regular file at `path`, following symbolic links inside the image.
    pub(crate) fn resolve_file(&self, path: &str) -> Option<PathBuf> {
        match self.walk(path, true) {
            Walk::Found(names, layer, stat) if tree::kind(&stat) == FileType::RegularFile => {
                Some(self.layers[layer].join(names.iter().collect::<PathBuf>()))
            }
            _ => None,
        }
    }

    /// The contents of the regular file at `path`, following symbolic links inside the image.
    pub(crate) fn read(&self, path: &str) -> Option<Vec<u8>> {
        let Walk::Found(names, layer, stat) = self.walk(path, true) else {
            return None;
        };
        let (name, parents) = names.split_last()?;
        if tree::kind(&stat) != FileType::RegularFile {
            return None;
        }
        let dir = tree::open_path(&self.layers[layer], parents).ok()?;
        tree::read_file(&dir, name).ok()
    }

    /// The mount points runc would create for a mount at `target`: the missing folders (and file) on the way,
    /// shallowest first, as link-free paths in the upper folder.
    pub(crate) fn missing_below(&self, target: &str) -> Vec<Vec<OsString>> {
        let Walk::Missing(mut path, missing) = self.walk(target, true) else {
            return Vec::new();
        };
        missing
            .into_iter()
            .map(|name| {
                path.push(name);
                path.clone()
            })
            .collect()
    }

    /// Removes the mount points in `stubs` (from [`missing_below`](Self::missing_below)) that are still empty,
    /// deepest first, keeping anything the step wrote.
    pub(crate) fn remove_stubs(&self, stubs: &[Vec<OsString>]) {
        let Some(upper) = &self.upper else { return };
        for path in stubs.iter().rev() {
            if !tree::remove_empty(upper, path) {
                return;
            }
        }
    }

    /// Creates folder `path` (as `WORKDIR` does) in the upper folder, following links inside the image; the
    /// existing folders on the way keep their mode and owner.
    pub(crate) fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let Some(upper) = &self.upper else {
            return Ok(());
        };
        let (existing, missing) = match self.walk(path, true) {
            Walk::Found(_, _, stat) if tree::kind(&stat) == FileType::Directory => return Ok(()),
            Walk::Found(..) | Walk::Broken => {
                return Err(io::Error::new(
                    io::ErrorKind::NotADirectory,
                    "a file (or a link loop) is in the way",
                ))
            }
            Walk::Missing(existing, missing) => (existing, missing),
        };
        let mut dir = tree::open_root(upper)?;
        for depth in 1..=existing.len() {
            // present below the upper folder: the upper gets a copy of the folder, as overlay's copy-up does
            let Some((_, _, stat)) = self.entry(&existing[..depth]) else {
                return Err(io::ErrorKind::NotFound.into());
            };
            let owner = (stat.st_uid, stat.st_gid);
            dir = tree::ensure_dir(&dir, &existing[depth - 1], stat.st_mode, owner)?;
        }
        for name in &missing {
            dir = tree::ensure_dir(&dir, name, 0o755, (0, 0))?;
        }
        Ok(())
    }

    /// Resolves `path` inside the image: links followed against the image's root (the last one only when
    /// `follow_last`), `..` never above it.
    fn walk(&self, path: &str, follow_last: bool) -> Walk {
        let mut pending: VecDeque<OsString> = names(Path::new(path)).collect();
        let mut done: Vec<OsString> = Vec::new();
        let mut links = 0;
        while let Some(name) = pending.pop_front() {
            if name == ".." {
                done.pop();
                continue;
            }
            done.push(name);
            let Some((layer, _, stat)) = self.entry(&done) else {
                let mut missing = vec![done.pop().unwrap_or_default()];
                for rest in pending {
                    if rest == ".." {
                        // `..` out of a folder that does not exist fails in the kernel too
                        return Walk::Broken;
                    }
                    missing.push(rest);
                }
                return Walk::Missing(done, missing);
            };
            match tree::kind(&stat) {
                FileType::Directory => {}
                FileType::Symlink if follow_last || !pending.is_empty() => {
                    links += 1;
                    let target = done.split_last().and_then(|(name, parents)| {
                        let dir = tree::open_path(&self.layers[layer], parents).ok()?;
                        tree::read_link(&dir, name).ok()
                    });
                    let (Some(target), true) = (target, links <= MAX_LINKS) else {
                        return Walk::Broken;
                    };
                    done.pop();
                    if target.is_absolute() {
                        done.clear();
                    }
                    for name in names(&target).rev() {
                        pending.push_front(name);
                    }
                }
                _ if pending.is_empty() => return Walk::Found(done, layer, stat),
                _ => return Walk::Broken,
            }
        }
        match self.entry(&done) {
            Some((layer, _, stat)) => Walk::Found(done, layer, stat),
            None => Walk::Broken,
        }
    }

    /// The entry at link-free `path` as overlay shows it: from the top layer that has it, unless a whiteout, a
    /// non-folder on the way or an opaque folder in a layer above hides it. Returns the layer index, the layer
    /// folder's path and the entry.
    fn entry(&self, path: &[OsString]) -> Option<(usize, &Path, Stat)> {
        for (index, layer) in self.layers.iter().enumerate() {
            let mut dir = tree::open_root(layer).ok()?;
            let Some((name, parents)) = path.split_last() else {
                return Some((index, layer, rustix::fs::fstat(&dir).ok()?));
            };
            let mut opaque = false;
            let mut present = true;
            for parent in parents {
                match tree::lstat(&dir, parent) {
                    Ok(stat) if tree::kind(&stat) == FileType::Directory => {
                        dir = tree::open_dir(&dir, parent).ok()?;
                        opaque |= tree::is_opaque(&dir);
                    }
                    // a whiteout, file or link here hides this path in every layer below
                    Ok(_) => return None,
                    Err(_) => {
                        present = false;
                        break;
                    }
                }
            }
            if present {
                if let Ok(stat) = tree::lstat(&dir, name) {
                    return (!tree::is_whiteout(&stat)).then_some((index, layer.as_path(), stat));
                }
            }
            if opaque {
                return None;
            }
        }
        None
    }
}

/// The names of `path`, with `..` kept (a leading `/` and `.` dropped).
fn names(path: &Path) -> impl DoubleEndedIterator<Item = OsString> + '_ {
    path.components().filter_map(|c| match c {
        Component::Normal(name) => Some(name.to_os_string()),
        Component::ParentDir => Some(OsString::from("..")),
        _ => None,
    })
}

pub(crate) use berth_core::image_config::normalize;

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn view_of(dirs: &[&Path]) -> RootfsView {
        RootfsView::of_layers(dirs.iter().map(|d| d.to_path_buf()).collect(), None)
    }

    /// A host folder holding a `passwd` with a user only the host has.
    fn host_etc() -> tempfile::TempDir {
        let host = tempfile::tempdir().expect("host dir");
        fs::write(
            host.path().join("passwd"),
            "hostonly:x:4242:4242::/h:/bin/sh\n",
        )
        .expect("passwd");
        fs::write(host.path().join("stub"), "").expect("stub");
        host
    }

    /// `path` inside `root` as a host path (an absolute image path lands there when resolved in the image).
    fn inside(root: &Path, path: &Path) -> PathBuf {
        root.join(path.strip_prefix("/").expect("absolute"))
    }

    #[test]
    fn upper_layers_win_and_links_resolve_across_layers() {
        let upper = tempfile::tempdir().expect("temp dir");
        let lower = tempfile::tempdir().expect("temp dir");
        fs::create_dir_all(lower.path().join("usr/bin")).expect("mkdir");
        fs::write(lower.path().join("usr/bin/tool"), "lower").expect("write");
        symlink("usr/bin", upper.path().join("bin")).expect("symlink");
        let view = view_of(&[upper.path(), lower.path()]);
        assert_eq!(view.read("/bin/tool").as_deref(), Some(&b"lower"[..]));
        assert_eq!(view.lookup("/bin"), Found::Link);
        fs::create_dir_all(upper.path().join("usr/bin")).expect("mkdir");
        fs::write(upper.path().join("usr/bin/tool"), "upper").expect("write");
        // `..` after a link is taken from where the link led (/usr), as the kernel does
        assert_eq!(
            view.read("/bin/../bin/tool").as_deref(),
            Some(&b"upper"[..])
        );
        assert_eq!(view.read("/bin/../usr/bin/tool"), None);
        assert!(!view.exists("/nothing/here"));
        assert_eq!(normalize(Path::new("/a/b"), "../c"), "/a/c");
    }

    #[test]
    fn links_to_host_paths_resolve_inside_the_image() {
        let host = host_etc();
        for target in [
            host.path().to_path_buf(),
            Path::new("../../../../../../../../..")
                .join(host.path().strip_prefix("/").expect("abs")),
        ] {
            let image = tempfile::tempdir().expect("image");
            symlink(&target, image.path().join("etc")).expect("symlink");
            fs::create_dir_all(image.path().join("home")).expect("mkdir");
            symlink(host.path(), image.path().join("home/app")).expect("symlink");
            let view = view_of(&[image.path()]);
            let err =
                resolve_user(&view, "hostonly").expect_err("the host's passwd is not the image's");
            assert!(err.contains("no user `hostonly`"), "{err}");
            assert_eq!(view.read("/home/app/passwd"), None);
            assert_eq!(view.resolve_file("/home/app/passwd"), None);
            assert!(!view.exists("/etc/stub"));
            // the same names inside the image are what the links mean
            let real = inside(image.path(), host.path());
            fs::create_dir_all(&real).expect("mkdir");
            fs::write(real.join("passwd"), "imageuser:x:7:7::/:/bin/sh\n").expect("passwd");
            assert_eq!(resolve_user(&view, "imageuser").map(|u| u.uid), Ok(7));
            assert_eq!(
                view.resolve_file("/home/app/passwd"),
                Some(real.join("passwd"))
            );
        }
    }

    #[test]
    fn a_folder_above_hides_a_link_below() {
        let host = host_etc();
        let upper = tempfile::tempdir().expect("upper");
        let lower = tempfile::tempdir().expect("lower");
        fs::create_dir(upper.path().join("etc")).expect("mkdir");
        symlink(host.path(), lower.path().join("etc")).expect("symlink");
        let view = view_of(&[upper.path(), lower.path()]);
        assert_eq!(view.lookup("/etc"), Found::Dir);
        assert_eq!(view.read("/etc/passwd"), None);
    }

    #[test]
    fn only_0_0_devices_are_whiteouts_and_opaque_folders_hide_below() {
        use nix::sys::stat::{makedev, mknod, Mode, SFlag};
        let upper = tempfile::tempdir().expect("upper");
        let lower = tempfile::tempdir().expect("lower");
        for name in ["gone", "null", "opt"] {
            fs::create_dir(lower.path().join(name)).expect("mkdir");
            fs::write(lower.path().join(name).join("file"), "lower").expect("write");
        }
        let node = |name: &str, dev| {
            mknod(
                &upper.path().join(name),
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o600),
                dev,
            )
            .unwrap_or_else(|e| {
                panic!("mknod needs root (CAP_MKNOD), as berth's containerd builder does: {e}")
            })
        };
        node("gone", makedev(0, 0));
        node("null", makedev(1, 3));
        fs::create_dir(upper.path().join("opt")).expect("mkdir");
        xattr::set(upper.path().join("opt"), "trusted.overlay.opaque", b"y")
            .expect("trusted xattrs need root (CAP_SYS_ADMIN), as berth's containerd builder does");
        let view = view_of(&[upper.path(), lower.path()]);
        assert_eq!(view.lookup("/gone"), Found::Missing);
        assert_eq!(view.lookup("/null"), Found::Other);
        assert_eq!(view.lookup("/null/file"), Found::Missing);
        assert_eq!(view.lookup("/opt"), Found::Dir);
        assert_eq!(view.lookup("/opt/file"), Found::Missing);
    }

    #[test]
    fn workdirs_are_made_inside_the_image_with_the_folders_above_copied_up() {
        let host = host_etc();
        // native snapshotter: one folder, the whole root, written in place
        let root = tempfile::tempdir().expect("root");
        symlink(host.path(), root.path().join("work")).expect("symlink");
        let native = RootfsView::of_layers(
            vec![root.path().to_path_buf()],
            Some(root.path().to_path_buf()),
        );
        native.create_dir_all("/work/sub").expect("workdir");
        assert!(
            !host.path().join("sub").exists(),
            "a folder was made on the host"
        );
        assert!(inside(root.path(), host.path()).join("sub").is_dir());
        // overlay: the upper folder gets /tmp as the layer below has it, then the new folders
        let upper = tempfile::tempdir().expect("upper");
        let lower = tempfile::tempdir().expect("lower");
        fs::create_dir(lower.path().join("tmp")).expect("mkdir");
        let sticky = std::os::unix::fs::PermissionsExt::from_mode(0o1777);
        fs::set_permissions(lower.path().join("tmp"), sticky).expect("chmod");
        symlink("/tmp", lower.path().join("scratch")).expect("symlink");
        let overlay = RootfsView::of_layers(
            vec![upper.path().to_path_buf(), lower.path().to_path_buf()],
            Some(upper.path().to_path_buf()),
        );
        overlay.create_dir_all("/scratch/a/b").expect("workdir");
        let mode = |p: PathBuf| {
            std::os::unix::fs::PermissionsExt::mode(&fs::metadata(p).expect("stat").permissions())
                & 0o7777
        };
        assert_eq!(mode(upper.path().join("tmp")), 0o1777);
        assert_eq!(mode(upper.path().join("tmp/a/b")), 0o755);
        overlay.create_dir_all("/tmp/a").expect("exists already");
        fs::write(lower.path().join("file"), "").expect("write");
        assert!(overlay.create_dir_all("/file/sub").is_err());
    }

    #[test]
    fn mount_points_follow_image_links_and_removal_never_leaves_the_upper() {
        let host = host_etc();
        let upper = tempfile::tempdir().expect("upper");
        let lower = tempfile::tempdir().expect("lower");
        fs::create_dir_all(lower.path().join("var/run")).expect("mkdir");
        symlink("var/run", lower.path().join("run")).expect("symlink");
        let view = RootfsView::of_layers(
            vec![upper.path().to_path_buf(), lower.path().to_path_buf()],
            Some(upper.path().to_path_buf()),
        );
        let stubs = view.missing_below("/run/secrets/token");
        let as_text: Vec<String> = stubs
            .iter()
            .map(|p| p.iter().collect::<PathBuf>().display().to_string())
            .collect();
        assert_eq!(as_text, ["var/run/secrets", "var/run/secrets/token"]);
        assert!(view.missing_below("/var").is_empty());
        // a step that replaced the mount point's folder with a link to the host
        fs::create_dir_all(upper.path().join("var/run")).expect("mkdir");
        symlink(host.path(), upper.path().join("var/run/secrets")).expect("symlink");
        let on_host = vec![vec![
            OsString::from("var"),
            OsString::from("run"),
            OsString::from("secrets"),
            OsString::from("stub"),
        ]];
        view.remove_stubs(&on_host);
        assert!(host.path().join("stub").exists(), "a host file was removed");
        fs::remove_file(upper.path().join("var/run/secrets")).expect("unlink");
        fs::create_dir(upper.path().join("var/run/secrets")).expect("mkdir");
        fs::write(upper.path().join("var/run/secrets/token"), "").expect("write");
        view.remove_stubs(&stubs);
        assert!(!upper.path().join("var/run/secrets").exists());
    }
}
