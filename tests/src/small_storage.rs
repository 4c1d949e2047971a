//! Engines whose storage is small, for the out-of-disk tests: a tmpfs of a given size ([`SmallTmpfs`]) and a
//! second daemon of the test's own on it ([`SmallDockerd`]), beside the shared services and never touching
//! them: its own socket, exec root, pid file, and namespaces in the shared containerd. Everything is removed
//! when the value is dropped. (Needs root, as the suite does: it mounts and starts daemons.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::conformance::support::unique;

/// A tmpfs of `size` (as `mount -o size=` takes it), unmounted when dropped.
pub struct SmallTmpfs {
    dir: tempfile::TempDir,
}

impl SmallTmpfs {
    /// Mounts a fresh tmpfs of `size` (e.g. `"640m"`).
    pub fn new(size: &str) -> SmallTmpfs {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a tmpfs (the suite runs as root)");
        SmallTmpfs { dir }
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills it with `filler` until `room` bytes are left (dd stops at ENOSPC, then the file gives back
    /// `room`); removing `filler` makes the room again.
    pub fn fill_leaving(&self, room: u64) -> PathBuf {
        let filler = self.path().join("filler");
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}", filler.display()))
            .arg("bs=1M")
            .output()
            .expect("run dd");
        let len = std::fs::metadata(&filler).expect("filler written").len();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&filler)
            .expect("open filler");
        file.set_len(len.saturating_sub(room))
            .expect("shrink filler");
        filler
    }
}

impl Drop for SmallTmpfs {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(self.dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // something of a daemon still holds it: detach it so the memory is freed when that ends
            let _ = Command::new("umount")
                .arg("-l")
                .arg(self.dir.path())
                .status();
        }
    }
}

/// A dockerd of the test's own whose `--data-root` is on a [`SmallTmpfs`], using the shared containerd under
/// namespaces of its own, with no bridge and no iptables rules (build with `--network none`).
pub struct SmallDockerd {
    child: Child,
    run_dir: PathBuf,
    namespaces: [String; 2],
    containerd: PathBuf,
    /// The tmpfs holding the data root; dropped after the daemon.
    pub storage: SmallTmpfs,
}

impl SmallDockerd {
    /// Starts it on a tmpfs of `size` and waits until it answers.
    pub fn start(size: &str, containerd: &Path) -> SmallDockerd {
        let storage = SmallTmpfs::new(size);
        let id = unique("sd");
        // the exec root holds containerd shim sockets, whose paths have a length limit: keep it short
        let run_dir = PathBuf::from(format!("/run/berth-{}", &id[id.len() - 12..]));
        std::fs::create_dir_all(&run_dir).expect("create the daemon's run folder");
        let namespaces = [format!("berth-{id}"), format!("berth-{id}-plugins")];
        let log = std::fs::File::create(run_dir.join("dockerd.log")).expect("log file");
        let child = Command::new("dockerd")
            .arg("--host")
            .arg(format!("unix://{}", run_dir.join("docker.sock").display()))
            .arg("--data-root")
            .arg(storage.path().join("docker"))
            .arg("--exec-root")
            .arg(run_dir.join("exec"))
            .arg("--pidfile")
            .arg(run_dir.join("docker.pid"))
            .arg(format!("--containerd={}", containerd.display()))
            .args(["--containerd-namespace", &namespaces[0]])
            .args(["--containerd-plugins-namespace", &namespaces[1]])
            .args(["--bridge=none", "--iptables=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let daemon = SmallDockerd {
            child,
            run_dir,
            namespaces,
            containerd: containerd.to_path_buf(),
            storage,
        };
        daemon.wait_ready();
        daemon
    }

    fn wait_ready(&self) {
        // readiness, not a timing claim: a daemon that never answers fails the test with its log
        for _ in 0..600 {
            if self.docker(&["version"]).status.success() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "the test's dockerd did not answer; its log:\n{}",
            std::fs::read_to_string(self.run_dir.join("dockerd.log")).unwrap_or_default()
        );
    }

    /// `DOCKER_HOST` for it.
    pub fn host(&self) -> String {
        format!("unix://{}", self.run_dir.join("docker.sock").display())
    }

    /// Its data root (what `docker info` calls `DockerRootDir`).
    pub fn data_root(&self) -> PathBuf {
        self.storage.path().join("docker")
    }

    /// Runs the docker CLI against it.
    pub fn docker(&self, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("--host")
            .arg(self.host())
            .args(args)
            .output()
            .expect("run docker")
    }

    /// Runs the docker CLI against it with the credentials of the docker config folder `config`.
    pub fn docker_with_config(&self, config: &Path, args: &[&str]) -> std::process::Output {
        Command::new("docker")
            .arg("--config")
            .arg(config)
            .arg("--host")
            .arg(self.host())
            .args(args)
            .output()
            .expect("run docker")
    }
}

impl Drop for SmallDockerd {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        for namespace in &self.namespaces {
            let _ = Command::new("ctr")
                .arg("--address")
                .arg(&self.containerd)
                .args(["namespaces", "rm", namespace])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}
