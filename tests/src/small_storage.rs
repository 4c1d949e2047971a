//! Engines whose storage is small, for the out-of-disk tests: a tmpfs of a given size ([`SmallTmpfs`]) and a
//! daemon of the test's own on it ([`SmallDockerd`], [`SmallPodman`], [`SmallContainerd`]) or an LXD storage
//! pool on it ([`SmallLxdPool`]), beside the shared services and never
//! touching them: its own socket, run folder, pid file, namespaces in the shared containerd, and TMPDIR (where
//! buildah keeps cache mounts, so another test holding the shared cache's lock does not stall this one).
//! Everything is removed when the value is dropped. (Needs root, as the suite does: it mounts and starts
//! daemons.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::conformance::support::unique;
pub use crate::small_podman::SmallPodman;

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

    /// Makes it `size` big (`mount -o remount,size=`): room made without touching what it holds.
    pub fn grow(&self, size: &str) {
        let grown = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.dir.path())
            .status()
            .expect("run mount");
        assert!(grown.success(), "grow the tmpfs");
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

/// A run folder under /run of a short name: containerd shim and conmon sockets inside it have a length limit.
pub(crate) fn run_dir(label: &str) -> PathBuf {
    let id = unique(label);
    let dir = PathBuf::from(format!("/run/berth-{label}-{}", &id[id.len() - 12..]));
    std::fs::create_dir_all(&dir).expect("create the daemon's run folder");
    dir
}

/// Waits until `ready` says the daemon answers; a daemon that never does fails the test with its log.
pub(crate) fn wait_ready(ready: impl Fn() -> bool, log: &Path) {
    // readiness, not a timing claim
    for _ in 0..600 {
        if ready() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!(
        "the test's daemon did not answer; its log:\n{}",
        std::fs::read_to_string(log).unwrap_or_default()
    );
}

/// Stops a daemon of the test's own (SIGTERM, so it unmounts what it mounted) and waits for it.
pub(crate) fn stop(child: &mut Child) {
    let _ = Command::new("kill").arg(child.id().to_string()).status();
    let _ = child.wait();
}

/// A dockerd of the test's own whose `--data-root` is on a [`SmallTmpfs`], using the shared containerd under
/// namespaces of its own, with a bridge of its own and no iptables rules (build with `--network none`).
///
/// Not `--bridge=none`: a dockerd started so deletes the host's `docker0` (it removes the default bridge it
/// is told not to use), which breaks every RUN step of the machine's own dockerd afterwards.
pub struct SmallDockerd {
    child: Child,
    bridge: String,
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
        let run_dir = run_dir("sd");
        let id = run_dir
            .file_name()
            .expect("named")
            .to_string_lossy()
            .to_string();
        let namespaces = [id.clone(), format!("{id}-plugins")];
        let bridge = own_bridge();
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
            .arg(format!("--bridge={bridge}"))
            .args(["--iptables=false", "--ip-masq=false"])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start dockerd");
        let daemon = SmallDockerd {
            child,
            bridge,
            run_dir,
            namespaces,
            containerd: containerd.to_path_buf(),
            storage,
        };
        wait_ready(
            || daemon.docker(&["version"]).status.success(),
            &daemon.run_dir.join("dockerd.log"),
        );
        daemon
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
        stop(&mut self.child);
        for namespace in &self.namespaces {
            let _ = Command::new("ctr")
                .arg("--address")
                .arg(&self.containerd)
                .args(["namespaces", "rm", namespace])
                .output();
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
        let _ = Command::new("ip")
            .args(["link", "del", &self.bridge])
            .output();
    }
}

/// Makes a bridge for a test's dockerd (a name and a /24 of its own, so daemons of parallel tests and
/// processes do not meet), and returns its name.
fn own_bridge() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let pid = std::process::id();
    let name = format!("bsd{}-{n}", pid % 100_000);
    let address = format!("172.31.{}.1/24", (pid + n) % 250);
    for args in [
        vec!["link", "add", &name, "type", "bridge"],
        vec!["addr", "add", &address, "dev", &name],
        vec!["link", "set", &name, "up"],
    ] {
        let out = Command::new("ip").args(&args).output().expect("run ip");
        assert!(
            out.status.success(),
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    name
}

/// A containerd of the test's own whose `root` is on a [`SmallTmpfs`] (its own config, state and sockets; no
/// CRI plugin).
pub struct SmallContainerd {
    child: Child,
    run_dir: PathBuf,
    /// The tmpfs holding `root`; dropped after the daemon.
    pub storage: SmallTmpfs,
}

impl SmallContainerd {
    /// Starts it on a tmpfs of `size` and waits until it answers.
    pub fn start(size: &str) -> SmallContainerd {
        let storage = SmallTmpfs::new(size);
        let run_dir = run_dir("sc");
        let config = run_dir.join("config.toml");
        let at = |name: &str| run_dir.join(name).display().to_string();
        std::fs::write(
            &config,
            format!(
                "version = 2\nroot = \"{}\"\nstate = \"{}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\"]\n\
                 [grpc]\n  address = \"{}\"\n[ttrpc]\n  address = \"{}\"\n[debug]\n  address = \"{}\"\n",
                storage.path().join("root").display(),
                at("state"),
                at("containerd.sock"),
                at("containerd.sock.ttrpc"),
                at("debug.sock"),
            ),
        )
        .expect("write containerd's config");
        let log = std::fs::File::create(run_dir.join("containerd.log")).expect("log file");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let daemon = SmallContainerd {
            child,
            run_dir,
            storage,
        };
        wait_ready(
            || daemon.ctr(&["version"]).status.success(),
            &daemon.run_dir.join("containerd.log"),
        );
        daemon
    }

    /// `CONTAINERD_ADDRESS` for it.
    pub fn address(&self) -> PathBuf {
        self.run_dir.join("containerd.sock")
    }

    /// Its `root`.
    pub fn root(&self) -> PathBuf {
        self.storage.path().join("root")
    }

    /// Runs `ctr` against it.
    pub fn ctr(&self, args: &[&str]) -> std::process::Output {
        Command::new("ctr")
            .arg("--address")
            .arg(self.address())
            .args(args)
            .output()
            .expect("run ctr")
    }
}

impl Drop for SmallContainerd {
    fn drop(&mut self) {
        stop(&mut self.child);
        // the snapshotter's mounts of a build's containers, if any outlived it
        if let Ok(mounts) = std::fs::read_to_string("/proc/self/mounts") {
            let root = self.storage.path().display().to_string();
            let mut inside: Vec<&str> = mounts
                .lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|m| m.starts_with(&root) && *m != root)
                .collect();
            inside.sort_unstable_by(|a, b| b.cmp(a));
            for mount in inside {
                let _ = Command::new("umount").arg(mount).status();
            }
        }
        let _ = std::fs::remove_dir_all(&self.run_dir);
    }
}

/// An LXD storage pool (driver `dir`) of the test's own on a [`SmallTmpfs`], in the shared LXD server;
/// deleted when dropped.
pub struct SmallLxdPool {
    /// The pool's name.
    pub name: String,
    /// The tmpfs holding it; dropped after the pool.
    pub storage: SmallTmpfs,
}

impl SmallLxdPool {
    /// Creates it on a tmpfs of `size`.
    pub fn create(size: &str) -> SmallLxdPool {
        let storage = SmallTmpfs::new(size);
        let source = storage.path().join("pool");
        std::fs::create_dir_all(&source).expect("create the pool's folder");
        let id = unique("pool");
        let name = format!("berth-{}", &id[id.len() - 12..]);
        let created = Command::new("lxc")
            .args(["storage", "create", &name, "dir"])
            .arg(format!("source={}", source.display()))
            .output()
            .expect("run lxc");
        assert!(
            created.status.success(),
            "lxc storage create: {}",
            String::from_utf8_lossy(&created.stderr)
        );
        SmallLxdPool { name, storage }
    }

    /// The pool's source folder.
    pub fn source(&self) -> PathBuf {
        self.storage.path().join("pool")
    }
}

impl Drop for SmallLxdPool {
    fn drop(&mut self) {
        let _ = Command::new("lxc")
            .args(["storage", "delete", &self.name])
            .output();
    }
}
