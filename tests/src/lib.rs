//! Helpers for berth's end-to-end tests: where the corpus lives, how to run the `berth` binary, how to lay out a
//! spec folder the way a user's checkout would be, the test environment of `scripts/env/up.sh` ([`env`]) and which daemon
//! suites run ([`select`]), a
//! recording, failure-scripting engine for workflow tests without a daemon ([`fake_engine`]), a misbehaving HTTP
//! server ([`fake_http`]), running berth as another user of the machine ([`users`]), the engine
//! conformance suite every backend runs ([`conformance`]), the fault-injecting registry proxy of the
//! reliability test ([`faults`]), engines on small storage for the out-of-disk tests ([`small_storage`]), a
//! project folder on each engine as a user has one ([`project`]), private CAs ([`test_ca`]), the token registry of
//! `scripts/env/token-registry.sh` with a slow link to it ([`token_registry`]) and the remote LXD server
//! ([`lxd_remote`]) and containerd namespaces whose test leaves nothing rooted ([`scratch_namespace`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub mod conformance;
pub mod env;
pub mod fake_engine;
pub mod fake_http;
pub mod faults;
pub mod lxd_remote;
pub mod project;
pub mod remote;
pub mod scratch_namespace;
pub mod select;
pub mod small_podman;
pub mod small_storage;
pub mod test_ca;
pub mod token_registry;
pub mod users;

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// The flytekit tag corpus folder.
pub fn corpus_dir() -> PathBuf {
    repo_root().join("tests").join("corpus")
}

/// The `berth` binary, built once per test process with the same cargo and target folder as the tests.
pub fn berth_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        let exe = std::env::current_exe().expect("test binary path");
        // target/<profile>/deps/<test> -> target/<profile>
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("target/<profile>/deps layout");
        let target_dir = profile_dir.parent().expect("target dir");
        let release = profile_dir.file_name().is_some_and(|n| n == "release");
        let mut cmd = Command::new(env!("CARGO"));
        cmd.args([
            "build",
            "--quiet",
            "-p",
            "berth-cli",
            "--bin",
            "berth",
            "--target-dir",
        ])
        .arg(target_dir);
        if release {
            cmd.arg("--release");
        }
        let status = cmd
            .current_dir(repo_root())
            .status()
            .expect("run cargo build for the berth binary");
        assert!(status.success(), "building the berth binary failed");
        profile_dir.join("berth")
    })
}

/// Runs `berth` with arguments in `dir`.
pub fn berth(dir: &Path, args: &[&str]) -> Output {
    Command::new(berth_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run berth")
}

/// Copies a folder (as `cp -a`) into a fresh temporary folder and makes it a new git repository with nothing
/// committed, so `.gitignore` applies to untracked files exactly as in a user's checkout.
pub fn fresh_git_copy(src: &Path) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().expect("temp dir");
    git_copy_into(src, tmp.path());
    tmp
}

/// Copies a folder (as `cp -a`) into `dest` (created if needed) and runs `git init` there, committing nothing.
pub fn git_copy_into(src: &Path, dest: &Path) {
    std::fs::create_dir_all(dest).expect("create copy destination");
    let status = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", src.display()))
        .arg(dest)
        .status()
        .expect("cp");
    assert!(status.success(), "cp -a {} failed", src.display());
    let status = Command::new("git")
        .args(["init", "-q"])
        .current_dir(dest)
        .status()
        .expect("git init");
    assert!(status.success(), "git init failed");
}

/// Runs `berth` in `dir` with extra environment variables and `stdin` as standard input.
pub fn berth_with(dir: &Path, args: &[&str], envs: &[(&str, &str)], stdin: &str) -> Output {
    let mut command = Command::new(berth_bin());
    command
        .args(args)
        .current_dir(dir)
        .envs(envs.iter().copied());
    output_with_stdin(command, stdin)
}

/// Runs `command` with `stdin` as its standard input and collects its output.
pub fn output_with_stdin(mut command: Command, stdin: &str) -> Output {
    use std::io::Write;
    let mut child = command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("run {:?}: {e}", command.get_program()));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("wait for the command")
}
