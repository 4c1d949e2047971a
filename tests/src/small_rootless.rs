//! A rootless Podman service of the test's own, for the out-of-disk tests: `podman system service` run as a
//! user of this machine (the rootless test user) whose `--root` (GraphRoot) is on a small tmpfs the user owns,
//! with a run root, libpod temporary folder, TMPDIR and socket of its own under /run. The shared rootless
//! service of that user (which other suites use) is never touched: nothing here reads or writes the user's
//! default store or runtime folder, and the user's storage.conf only gives the driver. (Needs root, as the
//! suite does: it mounts the tmpfs and switches to the user.)

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};

use crate::small_storage::{run_dir, stop, wait_ready, SmallTmpfs};
use crate::users::SystemUser;

/// The service, stopped and its store emptied when dropped (then the tmpfs is unmounted).
pub struct SmallRootlessPodman {
    child: Child,
    user: &'static SystemUser,
    run_dir: PathBuf,
    /// The tmpfs holding the store, owned by the user; dropped after the service.
    pub storage: SmallTmpfs,
}

impl SmallRootlessPodman {
    /// Starts it as `user` on a tmpfs of `size` and waits until it answers.
    pub fn start(user: &'static SystemUser, size: &str) -> SmallRootlessPodman {
        let storage = SmallTmpfs::new(size);
        let run_dir = run_dir("srp");
        for dir in [storage.path(), run_dir.as_path()] {
            own(user, dir);
        }
        let tmp = run_dir.join("tmp");
        std::fs::create_dir_all(&tmp).expect("create the service's TMPDIR");
        own(user, &tmp);
        let log = std::fs::File::create(run_dir.join("podman.log")).expect("log file");
        let tmp_var = format!("TMPDIR={}", tmp.display());
        let child = user
            .command(&[&tmp_var], Path::new("podman"))
            .args(store_args(&storage, &run_dir))
            .args(["system", "service", "--time=0"])
            .arg(format!("unix://{}", run_dir.join("podman.sock").display()))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start podman system service as the rootless user");
        let service = SmallRootlessPodman {
            child,
            user,
            run_dir,
            storage,
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

    /// Runs the podman CLI as the user on its store (the same `--root`, `--runroot` and `--tmpdir`).
    pub fn podman(&self, args: &[&str]) -> std::process::Output {
        self.user
            .command(&[], Path::new("podman"))
            .args(store_args(&self.storage, &self.run_dir))
            .args(args)
            .output()
            .expect("run podman as the rootless user")
    }
}

impl Drop for SmallRootlessPodman {
    fn drop(&mut self) {
        stop(&mut self.child);
        // not `podman system reset`: for a rootless user it also stops the user's pause process, which the
        // shared service's namespace hangs on; removing the images unmounts their layers in that namespace
        let _ = self.podman(&["rm", "--all", "--force"]);
        let _ = self.podman(&["rmi", "--all", "--force"]);
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// The service's store, run root and libpod temporary folder: all its own.
fn store_args(storage: &SmallTmpfs, run_dir: &Path) -> Vec<String> {
    let at = |path: PathBuf| path.display().to_string();
    vec![
        "--root".to_string(),
        at(storage.path().join("storage")),
        "--runroot".to_string(),
        at(run_dir.join("runroot")),
        "--tmpdir".to_string(),
        at(run_dir.join("libpod")),
    ]
}

/// Gives `dir` to `user`, mode 700 (a rootless store and runtime folder are private to their user).
fn own(user: &SystemUser, dir: &Path) {
    std::os::unix::fs::chown(dir, Some(user.uid), Some(user.gid)).expect("chown to the user");
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 700");
}
