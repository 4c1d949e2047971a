//! Running berth as another user of the test machine (the rootless Podman user, a user with nothing set up for
//! rootless Podman), with the environment a login would give: `setpriv` to the user's ids and groups, then
//! `env -i` with `HOME`, `USER`, `PATH` and `XDG_RUNTIME_DIR=/run/user/UID`.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::berth_bin;

/// A user of this machine, and a copy of the berth binary it may run (the build's target folder may be private
/// to root).
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
    _bin_dir: tempfile::TempDir,
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
        let bin_dir = tempfile::tempdir().expect("temp dir");
        let berth = bin_dir.path().join("berth");
        std::fs::copy(berth_bin(), &berth).expect("copy berth for another user");
        for path in [bin_dir.path(), &berth] {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .expect("chmod 755");
        }
        SystemUser {
            name: name.to_string(),
            uid: id(uid),
            gid: id(gid),
            home: home.to_string(),
            berth,
            _bin_dir: bin_dir,
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
