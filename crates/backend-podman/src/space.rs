//! A full disk behind the Podman service, named: builds and pulls fill its store (`GraphRoot`), while pushes,
//! exports and even inspects write temporary files to `imageCopyTmpDir` (the service's `TMPDIR`, else
//! containers.conf's `image_copy_tmp_dir`, `/var/tmp` by default) and fail there first.
//!
//! The service says only "no space left on device" after the file it was writing, so the place is picked by
//! that path: the temporary folder when the path is in it (or is the export's archive), else the store (a
//! path may be one inside a layer being unpacked: buildah and the pull unpack in a chroot). Podman 4.3's inspect
//! does not even say that: with its temporary folder full it crashes in the handler (HTTP 500, "nil pointer
//! dereference"); for a service on this machine berth then looks at that folder's free space itself.

use berth_core::error::says_no_space;
use berth_core::Error;

use crate::endpoint::Address;
use crate::PodmanEngine;

/// Free bytes below which a crashed inspect is taken for a full temporary folder: the handler writes a few
/// kilobytes there (the image's config and manifest), and crashes when it cannot.
const NEARLY_FULL: u64 = 1 << 20;

impl PodmanEngine {
    /// `failed` as an out-of-space error naming the file system that filled, when it says a disk is full
    /// (or, for a crashed handler, when the service's temporary folder is full); any other error as it is.
    pub(crate) async fn name_full_disk(&self, failed: Error) -> Error {
        let panicked = failed.message().contains("nil pointer dereference");
        if !failed.is_unplaced_no_space() && !panicked {
            return failed;
        }
        let (root, tmp) = match self.service().await {
            Ok(service) => (
                service.graph_root.clone(),
                service.image_copy_tmp_dir.clone(),
            ),
            Err(_) => (String::new(), String::new()),
        };
        let rootless = self.runs_rootless();
        if !says_no_space(failed.message()) {
            // a crashed handler: only a temporary folder seen full here makes it an out-of-space error
            if !matches!(self.socket(), Address::Unix(_)) || !nearly_full(&tmp) {
                return failed;
            }
            return temporary_folder_full(failed, "imageCopyTmpDir", &tmp, true, rootless);
        }
        let message = failed.message().to_string();
        if !tmp.is_empty() && message.contains(&tmp) {
            return temporary_folder_full(failed, "imageCopyTmpDir", &tmp, false, rootless);
        }
        // libpod's export handler writes `api.tar*` to Go's temporary folder ($TMPDIR, else /tmp), which is
        // imageCopyTmpDir only when TMPDIR is set
        if let Some(folder) = written_path(&message).and_then(export_folder) {
            return temporary_folder_full(failed, "its TMPDIR", folder, false, rootless);
        }
        // anything else is the store's: a path in the message may be one inside the layer being unpacked
        store_full(failed, &root, rootless)
    }
}

/// The folder of `path` when it is the archive libpod's export handler writes (`api.tar` and a number).
fn export_folder(path: &str) -> Option<&str> {
    let (folder, name) = path.rsplit_once('/')?;
    name.starts_with("api.tar")
        .then_some(folder)
        .filter(|f| !f.is_empty())
}

/// Out of space in the store: builds, pulls and commits. A rootless service's store is its user's, set in that
/// user's storage.conf (a rootless Podman reads no `graphroot` from /etc/containers/storage.conf), and only that
/// user's podman sees its images: the hint says so.
fn store_full(failed: Error, root: &str, rootless: bool) -> Error {
    let root = if root.is_empty() {
        "the storage `podman info` shows as GraphRoot"
    } else {
        root
    };
    let (whose, prune, config) = if rootless {
        (
            "rootless Podman's",
            " as the user the service runs as",
            "`graphroot` in that user's ~/.config/containers/storage.conf",
        )
    } else {
        ("Podman's", "", "`graphroot` in storage.conf")
    };
    let hint = format!(
        "make room on the file system of {root}: remove images and build containers you do not need{prune} \
         (`podman image prune`, `podman system prune`), or point the service at a larger store \
         ({config}, or `podman --root`); nothing of the failed work was kept"
    );
    failed.out_of_space(format!("{whose} storage (GraphRoot {root})"), hint)
}

/// Out of space in the temporary folder `tmp` (`what` the service calls it): pulls, pushes, exports, inspects.
/// `crashed`: the service's handler crashed instead of saying so, which the hint explains. A rootless service's
/// temporary folder is its user's `TMPDIR` (else that user's `image_copy_tmp_dir`): the hint says how that user
/// moves it, not root's /etc/containers.
fn temporary_folder_full(
    failed: Error,
    what: &str,
    tmp: &str,
    crashed: bool,
    rootless: bool,
) -> Error {
    let tmp = if tmp.is_empty() {
        "the folder `podman info` shows as imageCopyTmpDir"
    } else {
        tmp
    };
    let why = if crashed {
        " (Podman 4.3's handler crashes, nil pointer dereference, when this folder is full)"
    } else {
        ""
    };
    let (whose, elsewhere) = if rootless {
        (
            "rootless Podman's",
            "start the user's service with its TMPDIR on a larger file system (`systemctl --user edit \
             podman.service`, add `[Service]` and `Environment=TMPDIR=%h/.cache/podman-tmp`, make that folder, \
             restart the service), or set `image_copy_tmp_dir` in that user's \
             ~/.config/containers/containers.conf",
        )
    } else {
        (
            "Podman's",
            "start the service with TMPDIR (or `image_copy_tmp_dir` in containers.conf) on a larger file system",
        )
    };
    let hint = format!(
        "make room on the file system of {tmp}{why}: the service writes images there while it pulls, pushes or \
         exports them, and leaves files behind when it fails (remove the ones no podman process holds), or \
         {elsewhere}; nothing of the failed work was kept"
    );
    failed.out_of_space(format!("{whose} temporary folder ({what} {tmp})"), hint)
}

/// Whether the folder `path` on this machine has less than [`NEARLY_FULL`] bytes free.
fn nearly_full(path: &str) -> bool {
    if path.is_empty() {
        return false;
    }
    rustix::fs::statvfs(path).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) < NEARLY_FULL)
}

/// The file a Go error says it could not write: `write /var/tmp/x: no space left on device` gives `/var/tmp/x`.
fn written_path(message: &str) -> Option<&str> {
    let lower = message.to_ascii_lowercase();
    let at = lower.find(": no space left on device")?;
    let before = &message[..at];
    let start = before.rfind(' ').map_or(0, |i| i + 1);
    let path = &before[start..];
    path.starts_with('/').then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_written_path_is_read_from_gos_error() {
        assert_eq!(
            written_path("reading blob sha256:ab: write /var/tmp/3509: no space left on device"),
            Some("/var/tmp/3509")
        );
        assert_eq!(written_path("no space left on device"), None);
        assert_eq!(written_path("step: no space left on device"), None);
        assert_eq!(export_folder("/tmp/api.tar12345"), Some("/tmp"));
        assert_eq!(export_folder("/usr/share/locale/hr/coreutils.mo"), None);
    }

    #[test]
    fn a_rootless_store_is_named_as_the_users_with_the_users_config() {
        let failed = || {
            Error::new(
                berth_core::ErrorKind::Unavailable,
                "build: write /big: no space left on device",
            )
        };
        let named = store_full(failed(), "/home/u/.local/share/containers/storage", true);
        assert_eq!(named.kind(), berth_core::ErrorKind::ResourceExhausted);
        let said = named.to_string();
        assert!(
            said.contains(
                "rootless Podman's storage (GraphRoot /home/u/.local/share/containers/storage)"
            ),
            "{said}"
        );
        assert!(said.contains("as the user the service runs as"), "{said}");
        assert!(said.contains("~/.config/containers/storage.conf"), "{said}");
        let rootful = store_full(failed(), "/var/lib/containers/storage", false).to_string();
        assert!(rootful.contains("Podman's storage (GraphRoot /var/lib/containers/storage)"));
        assert!(
            !rootful.contains("rootless") && !rootful.contains("~/.config"),
            "{rootful}"
        );
    }

    #[test]
    fn the_place_is_the_folder_the_message_names() {
        let failed = Error::new(
            berth_core::ErrorKind::InvalidSpec,
            "push: write /t/mp/1: no space left on device",
        );
        let named = temporary_folder_full(failed, "imageCopyTmpDir", "/t/mp", false, false);
        assert_eq!(named.kind(), berth_core::ErrorKind::ResourceExhausted);
        assert!(named
            .message()
            .starts_with("no space left in Podman's temporary folder (imageCopyTmpDir /t/mp)"));
        let said = named.to_string();
        assert!(
            !said.contains("rootless") && !said.contains("~/.config"),
            "{said}"
        );
    }

    #[test]
    fn a_rootless_temporary_folder_is_named_as_the_users_with_the_users_config() {
        let failed = Error::new(
            berth_core::ErrorKind::Unavailable,
            "pull: write /home/u/tmp/storage1/1: no space left on device",
        );
        let named = temporary_folder_full(failed, "imageCopyTmpDir", "/home/u/tmp", false, true);
        assert_eq!(named.kind(), berth_core::ErrorKind::ResourceExhausted);
        assert!(named.message().starts_with(
            "no space left in rootless Podman's temporary folder (imageCopyTmpDir /home/u/tmp)"
        ));
        let said = named.to_string();
        for part in [
            "systemctl --user",
            "TMPDIR",
            "~/.config/containers/containers.conf",
        ] {
            assert!(said.contains(part), "{part}: {said}");
        }
        assert!(!said.contains("start the service with TMPDIR"), "{said}");
    }
}
