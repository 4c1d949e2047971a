//! Docker credential helpers (`docker-credential-<name> get|store`), as the docker-credential-helpers protocol
//! defines them: the server URL (or a JSON record) on stdin, JSON on stdout.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

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

/// Runs `docker-credential-<helper> <action>` with `input` on stdin; the child sees `path` as its `PATH`.
fn run(
    helper: &str,
    action: &str,
    input: &[u8],
    path: Option<&str>,
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
        .stderr(Stdio::piped());
    if let Some(path) = path {
        command.env("PATH", path);
    }
    let mut child = command.spawn().map_err(|e| Error::io(&program, e))?;
    if let Some(mut stdin) = child.stdin.take() {
        // a helper that exits without reading its input makes this fail: its exit status tells the rest
        let _ = stdin.write_all(input);
    }
    let output = child
        .wait_with_output()
        .map_err(|e| Error::io(&program, e))?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    Ok((output.status.success(), output.stdout, stderr))
}

/// Asks `helper` for the credentials of `server_url`; `None` when it has none.
pub(crate) fn get(
    helper: &str,
    server_url: &str,
    path: Option<&str>,
) -> Result<Option<(String, Secret)>> {
    let (ok, stdout, stderr) = run(helper, "get", server_url.as_bytes(), path)?;
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
) -> Result<()> {
    let input = serde_json::json!({
        "ServerURL": server_url,
        "Username": username,
        "Secret": secret.expose(),
    });
    let (ok, stdout, stderr) = run(helper, "store", input.to_string().as_bytes(), path)?;
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
