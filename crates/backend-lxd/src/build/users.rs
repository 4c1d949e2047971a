//! Users and paths inside the container's root folder, read from this machine.
//!
//! Paths are resolved without following symlinks on the host: an image's `/x -> /etc` would otherwise lead
//! berth to the host's `/etc`. A path through a symlink is treated as unknown, and berth asks the container
//! instead (`mkdir -p` through exec) where it must make one.

use std::path::{Component, Path, PathBuf};

/// `path` (absolute, inside the container) under `rootfs`, if no folder on the way is a symlink.
pub(crate) fn inside(rootfs: &Path, path: &str) -> Option<PathBuf> {
    let mut host = rootfs.to_path_buf();
    let components: Vec<Component> = Path::new(path).components().collect();
    for (i, component) in components.iter().enumerate() {
        match component {
            Component::Normal(name) => {
                host.push(name);
                let last = i + 1 == components.len();
                if !last
                    && std::fs::symlink_metadata(&host).is_ok_and(|m| m.file_type().is_symlink())
                {
                    return None;
                }
            }
            Component::ParentDir => return None,
            _ => {}
        }
    }
    Some(host)
}

/// A user as a RUN step runs: ids and home folder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct User {
    pub(crate) uid: u32,
    pub(crate) gid: u32,
    pub(crate) home: String,
}

/// The text of `/etc/<file>` in the image.
fn etc(rootfs: &Path, file: &str) -> String {
    inside(rootfs, &format!("/etc/{file}"))
        .and_then(|p| std::fs::read_to_string(p).ok())
        .unwrap_or_default()
}

/// The entries of a passwd or group file, split on `:`.
fn table(text: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(|l| l.split(':').map(str::to_string).collect())
        .collect()
}

/// Resolves `spec` (`user`, `user:group`, numeric or names; empty is root) against the image's passwd and group.
pub(crate) fn resolve(rootfs: &Path, spec: &str) -> Result<User, String> {
    resolve_in(&etc(rootfs, "passwd"), &etc(rootfs, "group"), spec)
}

/// [`resolve`] against the texts of the image's `/etc/passwd` and `/etc/group` (read through LXD's file API on a
/// remote server).
pub(crate) fn resolve_in(passwd: &str, group_file: &str, spec: &str) -> Result<User, String> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "root" } else { user };
    let passwd = table(passwd);
    let entry = passwd
        .iter()
        .find(|e| e.len() >= 6 && (e[0] == user || (user.parse::<u32>().is_ok() && e[2] == user)));
    let (uid, mut gid, home) = match (entry, user.parse::<u32>()) {
        (Some(e), _) => (
            e[2].parse()
                .map_err(|_| format!("bad uid for {user} in /etc/passwd"))?,
            e[3].parse()
                .map_err(|_| format!("bad gid for {user} in /etc/passwd"))?,
            e[5].clone(),
        ),
        (None, Ok(uid)) => (uid, 0, "/".to_string()),
        (None, Err(_)) => return Err(format!("no user `{user}` in the image's /etc/passwd")),
    };
    if let Some(group) = group {
        gid = match group.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => table(group_file)
                .iter()
                .find(|e| e.len() >= 3 && e[0] == group)
                .and_then(|e| e[2].parse().ok())
                .ok_or_else(|| format!("no group `{group}` in the image's /etc/group"))?,
        };
    }
    Ok(User { uid, gid, home })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_by_name_and_number() {
        let root = tempfile::tempdir().expect("root");
        std::fs::create_dir(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
        )
        .expect("passwd");
        std::fs::write(root.path().join("etc/group"), "root:x:0:\nstaff:x:50:\n").expect("group");
        let r = root.path();
        assert_eq!(resolve(r, "").expect("root").home, "/root");
        assert_eq!(resolve(r, "nobody").expect("nobody").uid, 65534);
        assert_eq!(resolve(r, "nobody:staff").expect("staff").gid, 50);
        assert_eq!(resolve(r, "1234").expect("numeric").uid, 1234);
        assert!(resolve(r, "ghost").is_err());
        std::os::unix::fs::symlink("/etc", r.join("link")).expect("symlink");
        assert!(inside(r, "/link/passwd").is_none());
        assert_eq!(inside(r, "/etc/passwd"), Some(r.join("etc/passwd")));
    }
}
