//! A Podman service of the test's own for the out-of-disk tests: `podman system service` whose `--root`
//! (GraphRoot) is on a small tmpfs, with a run root, TMPDIR (imageCopyTmpDir, where it writes images it pulls,
//! pushes or exports; on a tmpfs of its own if asked) and socket of its own under /run. Rootful, or run as a
//! user of this machine (the rootless test user): then the store, TMPDIR and run folder are the user's, mode
//! 700, and the libpod temporary folder is its own too, so the shared rootless service of that user (which
//! other suites use) is never touched: nothing here reads or writes the user's default store or runtime
//! folder, and the user's storage.conf only gives the driver. (Needs root, as the suite does: it mounts the
//! tmpfs and switches to the user.)

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::small_storage::{run_dir, stop, wait_ready, SmallTmpfs};
use crate::users::SystemUser;

/// The service, stopped and its store emptied when dropped (then the tmpfs are unmounted).
pub struct SmallPodman {
    child: Child,
    run_dir: PathBuf,
    /// The user it runs as; `None`: root.
    user: Option<&'static SystemUser>,
    /// The tmpfs holding the store; dropped after the service.
    pub storage: SmallTmpfs,
    /// The tmpfs holding its TMPDIR, when it has one of its own; dropped after the service.
    pub tmp: Option<SmallTmpfs>,
}

impl SmallPodman {
    /// Starts it (rootful) on a tmpfs of `size` and waits until it answers.
    pub fn start(size: &str) -> SmallPodman {
        Self::start_with(size, None, None)
    }

    /// Starts it (rootful) on a tmpfs of `size`, its TMPDIR on a tmpfs of `tmp_size` when given (else a folder
    /// of its run folder), and waits until it answers.
    pub fn start_with_tmp(size: &str, tmp_size: Option<&str>) -> SmallPodman {
        Self::start_with(size, tmp_size, None)
    }

    /// [`SmallPodman::start_with_tmp`] run as `user`: a rootless service.
    pub fn start_as(user: &'static SystemUser, size: &str, tmp_size: Option<&str>) -> SmallPodman {
        Self::start_with(size, tmp_size, Some(user))
    }

    fn start_with(
        size: &str,
        tmp_size: Option<&str>,
        user: Option<&'static SystemUser>,
    ) -> SmallPodman {
        let storage = SmallTmpfs::new(size);
        let run_dir = run_dir(if user.is_some() { "srp" } else { "sp" });
        let tmp_disk = tmp_size.map(SmallTmpfs::new);
        let tmp = match &tmp_disk {
            Some(disk) => disk.path().to_path_buf(),
            None => run_dir.join("tmp"),
        };
        std::fs::create_dir_all(&tmp).expect("create the service's TMPDIR");
        if let Some(user) = user {
            for dir in [storage.path(), run_dir.as_path(), tmp.as_path()] {
                own(user, dir);
            }
        }
        let log = std::fs::File::create(run_dir.join("podman.log")).expect("log file");
        let mut command = match user {
            Some(user) => {
                user.command(&[&format!("TMPDIR={}", tmp.display())], Path::new("podman"))
            }
            None => {
                let mut command = Command::new("podman");
                command.env("TMPDIR", &tmp);
                command
            }
        };
        let child = command
            .args(store_args(&storage, &run_dir, user.is_some()))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", run_dir.join("podman.sock").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start podman system service");
        let service = SmallPodman {
            child,
            run_dir,
            user,
            storage,
            tmp: tmp_disk,
        };
        wait_ready(
            || {
                service.run_dir.join("podman.sock").exists()
                    && service.podman(&["info"]).status.success()
            },
            &service.run_dir.join("podman.log"),
        );
        service
    }

    /// `CONTAINER_HOST` for it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.run_dir.join("podman.sock").display())
    }

    /// Its store (what `podman info` calls `GraphRoot`).
    pub fn graph_root(&self) -> PathBuf {
        self.storage.path().join("storage")
    }

    /// Runs the podman CLI on its store, as its user (locally, as the service does: the same `--root`,
    /// `--runroot` and, rootless, `--tmpdir`).
    pub fn podman(&self, args: &[&str]) -> std::process::Output {
        let mut command = match self.user {
            Some(user) => user.command(&[], Path::new("podman")),
            None => Command::new("podman"),
        };
        command
            .args(store_args(
                &self.storage,
                &self.run_dir,
                self.user.is_some(),
            ))
            .args(args)
            .output()
            .expect("run podman")
    }
}

impl Drop for SmallPodman {
    fn drop(&mut self) {
        stop(&mut self.child);
        if self.user.is_some() {
            // not `podman system reset`: for a rootless user it also stops the user's pause process, which the
            // shared service's namespace hangs on; removing the images unmounts their layers in that namespace
            let _ = self.podman(&["rm", "--all", "--force"]);
            let _ = self.podman(&["rmi", "--all", "--force"]);
        } else {
            // the store's overlay mounts, which the service leaves for the next podman on this root
            let _ = self.podman(&["system", "reset", "--force"]);
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// The service's store and run root, and for a rootless one its libpod temporary folder (the user's default
/// one is the shared service's): all its own.
fn store_args(storage: &SmallTmpfs, run_dir: &Path, rootless: bool) -> Vec<String> {
    let at = |path: PathBuf| path.display().to_string();
    let mut args = vec![
        "--root".to_string(),
        at(storage.path().join("storage")),
        "--runroot".to_string(),
        at(run_dir.join("runroot")),
    ];
    if rootless {
        args.extend(["--tmpdir".to_string(), at(run_dir.join("libpod"))]);
    }
    args
}

/// Gives `dir` to `user`, mode 700 (a rootless store and runtime folder are private to their user).
fn own(user: &SystemUser, dir: &Path) {
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).expect("chown to the user");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
}
