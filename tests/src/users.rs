//! Running berth as another user of the test machine (the rootless Podman user, a user with nothing set up for
//! rootless Podman), with the environment a login would give: `setpriv` to the user's ids and groups, then
//! `env -i` with `HOME`, `USER`, `PATH` and `XDG_RUNTIME_DIR=/run/user/UID`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::berth_bin;

/// A user of this machine, and a copy of the berth binary it may run (the build's target folder may be private
/// to root; see [`readable_copy`]).
#[derive(Debug)]
pub struct SystemUser {
    /// Login name.
    pub name: String,
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Home folder.
    pub home: String,
    berth: PathBuf,
}

impl SystemUser {
    /// Looks `name` up in the user database; panics saying to run `scripts/env/up.sh` (which creates the test
    /// users) when it is not there.
    pub fn get(name: &str) -> SystemUser {
        let out = Command::new("getent")
            .args(["passwd", name])
            .output()
            .expect("run getent");
        let passwd = String::from_utf8_lossy(&out.stdout).into_owned();
        let fields: Vec<&str> = passwd.trim().split(':').collect();
        let [_, _, uid, gid, _, home, _] = fields[..] else {
            panic!("no user {name} (getent passwd: {passwd:?}): run scripts/env/up.sh first");
        };
        let id = |field: &str| field.parse().expect("numeric id in /etc/passwd");
        SystemUser {
            name: name.to_string(),
            uid: id(uid),
            gid: id(gid),
            home: home.to_string(),
            berth: readable_copy(),
        }
    }

    /// The user's runtime folder, as a login session sets it.
    pub fn runtime_dir(&self) -> PathBuf {
        PathBuf::from(format!("/run/user/{}", self.uid))
    }

    /// `berth ARGS...` as the user, with `extra_env` (`NAME=value`) added to the login-like environment.
    pub fn berth(&self, extra_env: &[&str], args: &[&str]) -> Command {
        let mut command = self.command(extra_env, &self.berth);
        command.args(args);
        command
    }

    /// `program` as the user, with `extra_env` (`NAME=value`) added to the login-like environment.
    pub fn command(&self, extra_env: &[&str], program: &Path) -> Command {
        let mut command = Command::new("setpriv");
        command
            .arg(format!("--reuid={}", self.uid))
            .arg(format!("--regid={}", self.gid))
            .args(["--init-groups", "env", "-i"])
            .arg(format!("HOME={}", self.home))
            .arg(format!("USER={}", self.name))
            .arg("PATH=/usr/local/bin:/usr/bin:/bin")
            .arg(format!("XDG_RUNTIME_DIR={}", self.runtime_dir().display()))
            .args(extra_env)
            .arg(program)
            .current_dir("/");
        command
    }
}

/// A copy of the berth binary every user may run: `$TMPDIR/berth-tests-bin/<target folder's hash>/berth`, one per
/// target folder, replaced (by rename, so a running copy is never overwritten in place) by each test process. A
/// fixed place and not a temporary folder per process: the users are kept in statics, which are never dropped, so
/// a temporary folder would be left behind by every test run (78 MB each).
fn readable_copy() -> PathBuf {
    use std::hash::{Hash as _, Hasher as _};
    let source = berth_bin();
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    source.hash(&mut hasher);
    let root = std::env::temp_dir().join("berth-tests-bin");
    let dir = root.join(format!("{:016x}", hasher.finish()));
    std::fs::create_dir_all(&dir).expect("make the folder for berth's copy");
    static COPIES: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = COPIES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let partial = dir.join(format!("berth.{}.{n}", std::process::id()));
    std::fs::copy(source, &partial).expect("copy berth for another user");
    let berth = dir.join("berth");
    std::fs::rename(&partial, &berth).expect("put berth's copy in place");
    for path in [root.as_path(), dir.as_path(), berth.as_path()] {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    }
    berth
}
