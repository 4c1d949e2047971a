//! What the end-to-end suites share to run berth as a user does on each engine: a project folder per test
//! ([`Project`]), the engine and who runs berth ([`Engine`]: root, or the rootless Podman user), and small helpers
//! to write files and run tools.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use crate::env::TestEnv;
use crate::users::SystemUser;
use crate::{berth_bin, output_with_stdin};

/// Writes `text` to `dir/name`, making the folders it needs.
pub fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// The digest a registry reports for `reference`, asked by skopeo rather than berth, logged in with `creds`
/// (`user:password`); `verify_tls` false for the plain-HTTP test registries.
pub fn skopeo_digest(reference: &str, creds: &str, verify_tls: bool) -> String {
    let image = format!("docker://{reference}");
    let tls = format!("--tls-verify={verify_tls}");
    let args = [
        "inspect",
        &tls,
        "--creds",
        creds,
        "--format",
        "{{.Digest}}",
        &image,
    ];
    let (ok, inspected) = tool("skopeo", &args);
    assert!(ok, "skopeo inspect {reference}: {inspected}");
    inspected.trim().to_string()
}

/// Runs `program` with `args`: whether it succeeded, and its standard output and error together.
pub fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// What a berth run gave.
pub struct Run {
    /// Its exit code.
    pub code: i32,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

/// The engine a test builds with, and who runs berth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Engine {
    /// dockerd, berth as root.
    Docker,
    /// The rootful Podman service, berth as root.
    Podman,
    /// The rootless Podman service, berth as its unprivileged user.
    PodmanRootless,
    /// containerd with berth's native builder, berth as root.
    Containerd,
    /// LXD with berth's builder in an LXD container, berth as root.
    Lxd,
}

impl Engine {
    /// The engine's name in `BERTH_TEST_ENGINES`.
    pub fn selection_name(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman => "podman",
            Engine::PodmanRootless => "podman_rootless",
            Engine::Containerd => "containerd",
            Engine::Lxd => "lxd",
        }
    }

    /// The environment, when `BERTH_TEST_ENGINES` selects this engine.
    pub fn selected(self) -> Option<&'static TestEnv> {
        TestEnv::for_engine(self.selection_name())
    }

    /// The `--engine` value.
    pub fn flag(self) -> &'static str {
        match self {
            Engine::Docker => "docker",
            Engine::Podman | Engine::PodmanRootless => "podman",
            Engine::Containerd => "containerd",
            Engine::Lxd => "lxd",
        }
    }
}

/// A project folder for one test: spec files and the Docker config berth stores its login in. For rootless Podman
/// it belongs to the unprivileged user, since berth runs as that user.
pub struct Project {
    /// The folder.
    pub dir: tempfile::TempDir,
    /// The engine berth builds with.
    pub engine: Engine,
}

impl Project {
    /// A fresh folder for a test on `engine`.
    pub fn new(engine: Engine) -> Project {
        let dir = tempfile::tempdir().expect("temp dir");
        Project { dir, engine }
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// The Docker config folder berth stores the project's logins in (`DOCKER_CONFIG`).
    pub fn config(&self) -> PathBuf {
        self.path().join("docker-config")
    }

    /// Writes a file of the project (for rootless Podman, the whole folder then belongs to its user).
    pub fn write(&self, name: &str, text: &str) {
        write(self.path(), name, text);
        if self.engine == Engine::PodmanRootless {
            let (ok, out) = tool(
                "chown",
                &[
                    "-R",
                    &format!("{}:{}", rootless_user().uid, rootless_user().gid),
                    &self.path().display().to_string(),
                ],
            );
            assert!(ok, "chown for the rootless user: {out}");
        }
    }

    /// Runs berth in the project with `stdin` as standard input.
    pub fn berth(&self, args: &[&str], stdin: &str) -> Run {
        self.berth_with(args, stdin, &[])
    }

    /// [`Project::berth`] with these variables set in berth's environment only.
    pub fn berth_with(&self, args: &[&str], stdin: &str, vars: &[(&str, &str)]) -> Run {
        let config = self.config();
        let mut command = match self.engine {
            Engine::Docker | Engine::Podman | Engine::Containerd | Engine::Lxd => {
                let mut command = Command::new(berth_bin());
                command
                    .env("DOCKER_CONFIG", &config)
                    .envs(vars.iter().copied());
                command
            }
            Engine::PodmanRootless => {
                let mut extra = vec![format!("DOCKER_CONFIG={}", config.display())];
                extra.extend(vars.iter().map(|(name, value)| format!("{name}={value}")));
                let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
                rootless_user().berth(&extra, &[])
            }
        };
        command.args(args).current_dir(self.path());
        let out = output_with_stdin(command, stdin);
        Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// `berth build --engine <engine> ARGS...`.
    pub fn build(&self, args: &[&str]) -> Run {
        let mut all = vec!["build", "--engine", self.engine.flag()];
        all.extend_from_slice(args);
        self.berth(&all, "")
    }
}

/// The unprivileged user of the rootless Podman service (berth finds that user's service through
/// `$XDG_RUNTIME_DIR`, which [`SystemUser`] sets as a login would).
pub fn rootless_user() -> &'static SystemUser {
    static USER: OnceLock<SystemUser> = OnceLock::new();
    USER.get_or_init(|| SystemUser::get(&TestEnv::get().podman_rootless_user))
}
