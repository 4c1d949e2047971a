//! Where buildah keeps `RUN --mount=type=cache` folders, and how berth renders cache mounts for the service's
//! user.
//!
//! buildah 1.28 keeps them in `$TMPDIR/buildah-cache/<id>` of the service process (`/var/tmp` when TMPDIR is
//! unset, as with `systemctl --user start podman.socket`), one folder per id for root and every user alike, owned
//! by whoever made it first. So berth's cache ids carry the service user's uid (`apt-u1001`), and a rootless
//! service whose `buildah-cache` folder another user made (root's first build makes it mode 755) cannot make its
//! own folders there at all: its builds get an empty tmpfs per cache instead (correct images, nothing cached),
//! with a warning that says how to get caching back. `berth doctor` reports the same condition.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use berth_core::render::CacheMounts;

/// buildah's folder name under the service's TMPDIR.
const CACHE_FOLDER: &str = "buildah-cache";
/// TMPDIR when the service has none.
const DEFAULT_TMPDIR: &str = "/var/tmp";

/// How cache mounts are rendered for a service running as `uid` and listening on `socket`, and a warning when
/// caches cannot be kept.
pub(crate) fn cache_mounts(uid: u32, socket: &Path) -> (CacheMounts, Option<String>) {
    let keep = CacheMounts::SharedWithLock {
        id_suffix: format!("u{uid}"),
    };
    if uid == 0 {
        return (keep, None);
    }
    match cache_folder_problem(uid, socket) {
        None => (keep, None),
        Some((problem, fix)) => (
            CacheMounts::Tmpfs,
            Some(format!(
                "{problem}; this build's apt, uv and micromamba caches are empty and not kept (the image is the \
                 same, only slower to build); fix: {fix}"
            )),
        ),
    }
}

/// How cache mounts are rendered for a service on another host running as `uid`: root's caches are kept; a
/// rootless user's are not, since whether buildah can make its cache folders there ([`cache_folder_problem`])
/// cannot be seen from here, and a build that fails on a folder it cannot make is worse than an uncached one.
pub(crate) fn remote_cache_mounts(uid: u32) -> (CacheMounts, Option<String>) {
    if uid == 0 {
        return (
            CacheMounts::SharedWithLock {
                id_suffix: "u0".into(),
            },
            None,
        );
    }
    (
        CacheMounts::Tmpfs,
        Some(
            "rootless Podman on another host cannot keep build caches through berth: whether buildah may make this \
             user's cache folders there cannot be seen from here, so this build's apt, uv and micromamba caches are \
             empty and not kept (the image is the same, only slower to build); fix: build with that host's \
             rootful service (ssh://root@HOST/run/podman/podman.sock), or run berth on that host"
                .into(),
        ),
    )
}

/// Why a rootless service running as `uid` cannot create its cache folders, and the fix; `None` when it can.
pub fn cache_folder_problem(uid: u32, socket: &Path) -> Option<(String, String)> {
    let root = service_tmpdir(uid, socket)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_TMPDIR))
        .join(CACHE_FOLDER);
    let meta = std::fs::metadata(&root).ok()?;
    let writable = meta.uid() == uid || meta.mode() & 0o002 != 0;
    if writable {
        return None;
    }
    Some((
        format!(
            "rootless Podman cannot keep build caches: {} belongs to uid {} (mode {:o}), so buildah cannot make \
             this user's cache folders in it",
            root.display(),
            meta.uid(),
            meta.mode() & 0o7777,
        ),
        format!(
            "as root, `chmod 1777 {}` (each user's caches stay apart: berth's cache ids carry the uid), or give \
             the user's Podman service its own TMPDIR (`systemctl --user edit podman.service`, add `[Service]` and \
             `Environment=TMPDIR=%h/.cache/podman-tmp`, make that folder, restart the service)",
            root.display()
        ),
    ))
}

/// TMPDIR of the Podman service process of `uid` that serves `socket`, if it can be read
/// ([`crate::service_process`]).
fn service_tmpdir(uid: u32, socket: &Path) -> Option<PathBuf> {
    crate::service_process::find(uid, socket)?.tmpdir
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_keeps_caches_under_its_own_ids() {
        let (mounts, warning) = cache_mounts(0, Path::new("/run/podman/podman.sock"));
        assert_eq!(
            mounts,
            CacheMounts::SharedWithLock {
                id_suffix: "u0".into()
            }
        );
        assert_eq!(warning, None);
    }
}
