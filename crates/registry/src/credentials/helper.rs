//! Docker credential helpers (`docker-credential-<name> get|store`), as the docker-credential-helpers protocol
//! defines them: the server URL (or a JSON record) on stdin, JSON on stdout.

use std::io::{Read, Write as _};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

use berth_core::engine::Secret;
use berth_core::{Error, ErrorKind, Result};
use serde::Deserialize;

/// What a helper's `get` prints.
#[derive(Deserialize)]
struct HelperCredentials {
    #[serde(rename = "Username", default)]
    username: String,
    #[serde(rename = "Secret", default)]
    secret: String,
}

/// Finds `docker-credential-<helper>` in the directories of `path` (a `PATH` value).
fn find(helper: &str, path: Option<&str>) -> Option<PathBuf> {
    let name = format!("docker-credential-{helper}");
    std::env::split_paths(path?)
        .map(|dir| dir.join(&name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt as _;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// The most a helper may print on each of stdout and stderr; credentials are a few hundred bytes.
const MAX_OUTPUT: u64 = 1 << 20;

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; the child sees `path` as its `PATH`.
///
/// The helper runs in a process group of its own and is killed, group and all, when it has not finished
/// within `timeout`: a helper waiting on a pinentry or a locked keyring would otherwise block berth for ever.
fn run(
    helper: &str,
    action: &str,
    input: &[u8],
    path: Option<&str>,
    timeout: Duration,
) -> Result<(bool, Vec<u8>, String)> {
    let program = find(helper, path).ok_or_else(|| {
        Error::invalid(format!(
            "the docker config names credential helper `{helper}`, but docker-credential-{helper} is not in PATH"
        ))
        .with_hint(format!(
            "install docker-credential-{helper}, or remove it (credsStore/credHelpers) from the docker config"
        ))
    })?;
    let mut command = Command::new(&program);
    command
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(|e| Error::io(&program, e))?;
    // Each pipe on a thread of its own: a helper may fill one pipe before reading its input, and one that
    // hangs must not hang the threads berth waits on (they are left behind, reading a pipe that closes when
    // the killed group's last process is gone).
    let (stdin, stdout, stderr) = (child.stdin.take(), child.stdout.take(), child.stderr.take());
    let input = input.to_vec();
    std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            // a helper that exits without reading its input makes this fail: its exit status tells the rest
            let _ = stdin.write_all(&input);
        }
    });
    let out = read_on_thread(stdout);
    let err = read_on_thread(stderr);
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().map_err(|e| Error::io(&program, e))? {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = killpg(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
            let _ = child.wait();
            return Err(Error::new(
                ErrorKind::Unavailable,
                format!(
                    "docker-credential-{helper} {action} did not finish within {} s and was stopped",
                    timeout.as_secs_f32()
                ),
            )
            .with_operation("resolve credentials")
            .with_hint(format!(
                "a helper waiting for a passphrase (pinentry, a locked keyring) cannot be answered here: unlock \
                 it first (run `docker-credential-{helper} list`), or give berth the credentials another way"
            )));
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let remaining = deadline
        .saturating_duration_since(Instant::now())
        .max(Duration::from_millis(100));
    let stdout = out.recv_timeout(remaining).unwrap_or_default();
    let stderr = err.recv_timeout(remaining).unwrap_or_default();
    let stderr = String::from_utf8_lossy(&stderr).trim().to_string();
    Ok((status.success(), stdout, stderr))
}

/// Reads at most [`MAX_OUTPUT`] bytes of `pipe` on a thread; the bytes arrive on the channel at its end.
fn read_on_thread(pipe: Option<impl Read + Send + 'static>) -> mpsc::Receiver<Vec<u8>> {
    let (send, receive) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        if let Some(pipe) = pipe {
            let _ = pipe.take(MAX_OUTPUT).read_to_end(&mut bytes);
        }
        let _ = send.send(bytes);
    });
    receive
}

/// Asks `helper` for the credentials of `server_url`; `None` when it has none.
pub(crate) fn get(
    helper: &str,
    server_url: &str,
    path: Option<&str>,
    timeout: Duration,
) -> Result<Option<(String, Secret)>> {
    let (ok, stdout, stderr) = run(helper, "get", server_url.as_bytes(), path, timeout)?;
    if !ok {
        // The protocol's only way to say "none": the helper prints credentials.ErrCredentialsNotFound's
        // message. The Docker CLI recognises it by this text too (IsErrCredentialsNotFoundMessage).
        let text = format!("{} {stderr}", String::from_utf8_lossy(&stdout));
        if text.contains("credentials not found") {
            return Ok(None);
        }
        return Err(Error::new(
            ErrorKind::Unauthorized,
            format!(
                "docker-credential-{helper} get {server_url} failed: {}",
                text.trim()
            ),
        )
        .with_operation("resolve credentials"));
    }
    let creds: HelperCredentials = serde_json::from_slice(&stdout).map_err(|e| {
        Error::new(
            ErrorKind::Protocol,
            format!(
                "docker-credential-{helper} get printed something that is not credentials JSON: it {}",
                super::config_file::json_problem(&e)
            ),
        )
    })?;
    if creds.username.is_empty() && creds.secret.is_empty() {
        return Ok(None);
    }
    Ok(Some((creds.username, Secret::new(creds.secret))))
}

/// Asks `helper` to store credentials for `server_url`.
pub(crate) fn store(
    helper: &str,
    server_url: &str,
    username: &str,
    secret: &Secret,
    path: Option<&str>,
    timeout: Duration,
) -> Result<()> {
    let input = serde_json::json!({
        "ServerURL": server_url,
        "Username": username,
        "Secret": secret.expose(),
    });
    let (ok, stdout, stderr) = run(helper, "store", input.to_string().as_bytes(), path, timeout)?;
    if ok {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Io,
        format!(
            "docker-credential-{helper} store for {server_url} failed: {} {stderr}",
            String::from_utf8_lossy(&stdout).trim()
        ),
    )
    .with_operation("login"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    /// A folder holding `docker-credential-<name>` with `script` as its body.
    fn helper_dir(name: &str, script: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join(format!("docker-credential-{name}"));
        std::fs::write(&file, format!("#!/bin/sh\n{script}\n")).expect("write helper");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        dir
    }

    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| stat.split_whitespace().nth(2).is_none_or(|s| s != "Z"))
    }

    #[test]
    fn a_helper_that_never_answers_is_killed_with_its_children() {
        // as a helper waiting on a pinentry would: a child of its own that holds the pipes open
        let dir = helper_dir(
            "stuck",
            "sleep 1000 &\necho $! > \"$(dirname \"$0\")/child\"\nwait",
        );
        let path = format!("{}:/usr/bin:/bin", dir.path().display());
        let err =
            get("stuck", "h", Some(&path), Duration::from_millis(300)).expect_err("no answer");
        assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
        assert!(err.message().contains("did not finish"), "{err}");
        assert!(
            err.hint().is_some_and(|h| h.contains("passphrase")),
            "{err:?}"
        );
        let child = std::fs::read_to_string(dir.path().join("child")).expect("child pid");
        let child = child.trim();
        // SIGKILL to the group is immediate; the guard only spares a loaded machine a flaky result
        let gone = (0..500).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            !alive(child)
        });
        assert!(gone, "the helper's child {child} still runs");
    }

    #[test]
    fn a_helper_that_answers_is_read() {
        let dir = helper_dir(
            "quick",
            "read server\necho \"{\\\"Username\\\":\\\"u\\\",\\\"Secret\\\":\\\"s-$server\\\"}\"",
        );
        let path = dir.path().display().to_string();
        let (user, secret) = get("quick", "h", Some(&path), Duration::from_secs(60))
            .expect("answers")
            .expect("found");
        assert_eq!((user.as_str(), secret.expose()), ("u", "s-h"));
    }
}
