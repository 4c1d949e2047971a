//! Looking into a snapshot from the host, without mounting it.
//!
//! containerd runs on this machine (berth reaches it over a unix socket), and its overlay and native snapshotters
//! describe a snapshot as host folders: `overlay` mounts with `upperdir=` and `lowerdir=a:b:...`, or a `bind`
//! of one folder. Reading those folders top-down answers what berth needs before a step runs: the user database
//! (`/etc/passwd`, `/etc/group`) to resolve `USER name`, which paths exist (so a COPY layer adds only missing
//! parent folders, and mount points that runc creates can be removed again before the layer is taken), and the
//! host path of a helper image's file to bind-mount. Overlay whiteouts (0/0 character devices) hide what is
//! below them.

use std::os::unix::fs::FileTypeExt as _;
use std::path::{Component, Path, PathBuf};

use crate::convert::MountSpec;

/// A snapshot's folders, top first; `upper` is where an active snapshot's changes go.
#[derive(Debug, Clone)]
pub(crate) struct RootfsView {
    layers: Vec<PathBuf>,
    upper: Option<PathBuf>,
}

/// What a path is in the view.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    /// Nothing there (or hidden by a whiteout).
    Missing,
    /// A folder.
    Dir,
    /// A regular file at this host path.
    File(PathBuf),
    /// A symbolic link with this target.
    Link(PathBuf),
    /// Something else (device, socket).
    Other,
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

    /// The folder an active snapshot's changes go to.
    pub(crate) fn upper(&self) -> Option<&Path> {
        self.upper.as_deref()
    }

    /// What `path` (absolute inside the image) is, without following a final symlink.
    pub(crate) fn lookup(&self, path: &str) -> Found {
        let relative = relative(path);
        for layer in &self.layers {
            // a whiteout of the path or of a parent hides everything below
            let mut hidden = false;
            let mut partial = layer.clone();
            for component in relative.components() {
                partial.push(component);
                if let Ok(meta) = std::fs::symlink_metadata(&partial) {
                    if meta.file_type().is_char_device() && meta.len() == 0 {
                        hidden = true;
                        break;
                    }
                }
            }
            if hidden {
                return Found::Missing;
            }
            let full = layer.join(&relative);
            let Ok(meta) = std::fs::symlink_metadata(&full) else {
                continue;
            };
            let kind = meta.file_type();
            return if kind.is_dir() {
                Found::Dir
            } else if kind.is_file() {
                Found::File(full)
            } else if kind.is_symlink() {
                std::fs::read_link(&full).map_or(Found::Other, Found::Link)
            } else {
                Found::Other
            };
        }
        Found::Missing
    }

    /// Whether `path` exists.
    pub(crate) fn exists(&self, path: &str) -> bool {
        self.lookup(path) != Found::Missing
    }

    /// The host path of the regular file at `path`, following symbolic links inside the image.
    pub(crate) fn resolve_file(&self, path: &str) -> Option<PathBuf> {
        let mut current = normalize(Path::new("/"), path);
        for _ in 0..16 {
            match self.lookup(&current) {
                Found::File(host) => return Some(host),
                Found::Link(target) => {
                    let dir = Path::new(&current).parent().unwrap_or(Path::new("/"));
                    current = normalize(dir, &target.to_string_lossy());
                }
                _ => return None,
            }
        }
        None
    }

    /// The contents of the regular file at `path`.
    pub(crate) fn read(&self, path: &str) -> Option<Vec<u8>> {
        std::fs::read(self.resolve_file(path)?).ok()
    }
}

/// `path` without its leading `/`, `.` and `..` (which cannot leave the root).
fn relative(path: &str) -> PathBuf {
    let mut out = PathBuf::new();
    for component in Path::new(path).components() {
        match component {
            Component::Normal(c) => out.push(c),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

/// `path` resolved against `dir` inside the image, as an absolute path.
pub(crate) fn normalize(dir: &Path, path: &str) -> String {
    let joined = if path.starts_with('/') {
        PathBuf::from(path)
    } else {
        dir.join(path)
    };
    format!("/{}", relative(&joined.to_string_lossy()).display())
}

/// A user as a process runs: ids and home folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
    pub(crate) additional_gids: Vec<u32>,
}

/// Resolves `spec` (`name`, `uid`, `name:group`, `uid:gid`, empty for root) against the image's user database.
pub(crate) fn resolve_user(view: &RootfsView, spec: &str) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "root" } else { user };
    let passwd = view
        .read("/etc/passwd")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let groups = view
        .read("/etc/group")
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    // name:password:uid:gid:gecos:home:shell
    let entry = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() >= 6 && (f[0] == user || (user.parse::<u32>().is_ok() && f[2] == user)));
    let (uid, mut gid, home, name) = match (&entry, user.parse::<u32>()) {
        (Some(f), _) => (
            f[2].parse()
                .map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            f[3].parse()
                .map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            f[5].to_string(),
            Some(f[0].to_string()),
        ),
        (None, Ok(uid)) => (uid, uid, "/".to_string(), None),
        (None, Err(_)) => return Err(format!("no user `{user}` in the image's /etc/passwd")),
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(g) => g,
            Err(_) => groups
                .lines()
                .map(|l| l.split(':').collect::<Vec<_>>())
                .find(|f| f.len() >= 3 && f[0] == group)
                .and_then(|f| f[2].parse().ok())
                .ok_or_else(|| format!("no group `{group}` in the image's /etc/group"))?,
        };
    }
    let mut additional_gids = Vec::new();
    if let Some(name) = &name {
        for f in groups.lines().map(|l| l.split(':').collect::<Vec<_>>()) {
            if f.len() >= 4 && f[3].split(',').any(|m| m == name) {
                if let Ok(g) = f[2].parse::<u32>() {
                    if g != gid && !additional_gids.contains(&g) {
                        additional_gids.push(g);
                    }
                }
            }
        }
    }
    Ok(User {
        uid,
        gid,
        home,
        additional_gids,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view_of(dirs: &[&Path]) -> RootfsView {
        RootfsView {
            layers: dirs.iter().map(|d| d.to_path_buf()).collect(),
            upper: None,
        }
    }

    #[test]
    fn users_resolve_by_name_and_id() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(dir.path().join("etc")).expect("mkdir");
        std::fs::write(
            dir.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\napp:x:1000:1000::/home/app:/bin/bash\n",
        )
        .expect("passwd");
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nstaff:x:50:app\napp:x:1000:\n",
        )
        .expect("group");
        let view = view_of(&[dir.path()]);
        let app = resolve_user(&view, "app").expect("app");
        assert_eq!(
            (app.uid, app.gid, app.home.as_str()),
            (1000, 1000, "/home/app")
        );
        assert_eq!(app.additional_gids, vec![50]);
        assert_eq!(resolve_user(&view, "nobody").map(|u| u.uid), Ok(65534));
        assert_eq!(
            resolve_user(&view, "123:staff").map(|u| (u.uid, u.gid)),
            Ok((123, 50))
        );
        assert!(resolve_user(&view, "ghost").is_err());
    }

    #[test]
    fn upper_layers_win_and_links_resolve() {
        let upper = tempfile::tempdir().expect("temp dir");
        let lower = tempfile::tempdir().expect("temp dir");
        std::fs::create_dir_all(lower.path().join("usr/bin")).expect("mkdir");
        std::fs::write(lower.path().join("usr/bin/tool"), "lower").expect("write");
        std::os::unix::fs::symlink("usr/bin", lower.path().join("bin")).expect("symlink");
        let view = view_of(&[upper.path(), lower.path()]);
        assert_eq!(view.read("/bin/tool").as_deref(), Some(&b"lower"[..]));
        std::fs::create_dir_all(upper.path().join("usr/bin")).expect("mkdir");
        std::fs::write(upper.path().join("usr/bin/tool"), "upper").expect("write");
        assert_eq!(view.read("/usr/bin/tool").as_deref(), Some(&b"upper"[..]));
        assert!(!view.exists("/nothing/here"));
        assert_eq!(normalize(Path::new("/a/b"), "../c"), "/a/c");
    }
}
