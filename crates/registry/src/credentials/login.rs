//! Storing credentials where `docker login` would, so Docker, Podman and berth all find them afterwards.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use berth_core::engine::Secret;
use berth_core::{Error, Result};
use serde_json::{Map, Value};

use super::config_file::{encode_auth, normalize_host, server_key};
use super::{helper, CredentialOrigin, CredentialResolver};

/// Stores credentials for registry `host` the way `docker login` does: with the config's `credHelpers[host]`
/// or `credsStore` helper when one is configured (leaving an empty `auths` entry, as Docker does), else as
/// `auths[host].auth` in `config.json`. The file (`config_path`, else `$DOCKER_CONFIG/config.json`, else
/// `~/.docker/config.json`) keeps every other key, and is replaced atomically with mode 0600.
///
/// This only stores; it does not check the credentials against the registry.
pub fn login(
    host: &str,
    username: &str,
    password: &Secret,
    config_path: Option<&Path>,
) -> Result<CredentialOrigin> {
    let mut resolver = CredentialResolver::from_env();
    if let Some(path) = config_path {
        resolver = resolver.docker_config(path);
    }
    resolver.login(host, username, password)
}

/// Does [`login`]'s work on the config at `path`, running helpers found in `path_var`.
pub(super) fn store(
    path: &Path,
    host: &str,
    username: &str,
    password: &Secret,
    path_var: Option<&str>,
    helper_timeout: std::time::Duration,
) -> Result<CredentialOrigin> {
    let op = |e: Error| {
        e.with_operation("login")
            .with_engine(crate::classify::ENGINE)
    };
    let mut root = read_object(path).map_err(op)?;
    let key = server_key(host);
    let helper = root
        .get("credHelpers")
        .and_then(Value::as_object)
        .and_then(|helpers| {
            helpers
                .iter()
                .find(|(k, _)| normalize_host(k) == normalize_host(host))
                .and_then(|(_, v)| v.as_str())
        })
        .or_else(|| root.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_string);
    let auths = root
        .entry("auths")
        .or_insert_with(|| Value::Object(Map::new()));
    if !auths.is_object() {
        *auths = Value::Object(Map::new());
    }
    let auths = auths
        .as_object_mut()
        .ok_or_else(|| op(Error::invalid("auths is not an object")))?;
    let origin = match &helper {
        Some(helper) => {
            helper::store(helper, &key, username, password, path_var, helper_timeout)
                .map_err(op)?;
            // Docker leaves an entry without secrets so the registry still shows up as logged in.
            auths
                .entry(key.clone())
                .or_insert_with(|| Value::Object(Map::new()));
            CredentialOrigin::Helper {
                helper: helper.clone(),
                config: path.to_path_buf(),
            }
        }
        None => {
            let mut entry = Map::new();
            entry.insert(
                "auth".into(),
                Value::String(encode_auth(username, password.expose())),
            );
            auths.insert(key.clone(), Value::Object(entry));
            CredentialOrigin::AuthFile {
                path: path.to_path_buf(),
                key,
            }
        }
    };
    write_atomically(path, &Value::Object(root)).map_err(op)?;
    Ok(origin)
}

fn read_object(path: &Path) -> Result<Map<String, Value>> {
    let text = match std::fs::read(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Map::new()),
        Err(e) => return Err(Error::io(path, e)),
    };
    if text.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::invalid(format!(
            "{} is not a JSON object",
            path.display()
        ))),
        Err(e) => Err(Error::invalid(format!(
            "{} is not valid JSON: it {}",
            path.display(),
            super::config_file::json_problem(&e)
        ))
        .with_hint("fix or move the file; berth will not overwrite a config it cannot read")),
    }
}

/// Writes `value` to `path` through a temporary file in the same folder, mode 0600, then renames it over.
/// A symlinked config is written where the link points, so the link survives.
fn write_atomically(path: &Path, value: &Value) -> Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let target: PathBuf = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let dir = target
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        // best effort: the folder holds secrets
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let mut text = serde_json::to_string_pretty(value)
        .map_err(|e| Error::invalid(format!("cannot serialise the docker config: {e}")))?;
    text.push('\n');
    let mut tmp = tempfile::Builder::new()
        .prefix(".config.json.")
        .tempfile_in(dir)
        .map_err(|e| Error::io(dir, e))?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.write_all(text.as_bytes())
        .and_then(|()| tmp.as_file().sync_all())
        .map_err(|e| Error::io(tmp.path(), e))?;
    tmp.persist(&target)
        .map_err(|e| Error::io(&target, e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn login_preserves_other_keys_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths": {"other.io": {"auth": "b3RoZXI6eA=="}}, "proxies": {"default": {"httpProxy": "x"}}, "psFormat": "t"}"#,
        )
        .expect("write");
        let origin = login("127.0.0.1:5000", "u", &Secret::new("p"), Some(&path)).expect("login");
        assert_eq!(
            origin,
            CredentialOrigin::AuthFile {
                path: path.clone(),
                key: "127.0.0.1:5000".into()
            }
        );
        let written: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert_eq!(written["psFormat"], "t");
        assert_eq!(written["proxies"]["default"]["httpProxy"], "x");
        assert_eq!(written["auths"]["other.io"]["auth"], "b3RoZXI6eA==");
        assert_eq!(
            written["auths"]["127.0.0.1:5000"]["auth"],
            encode_auth("u", "p")
        );
        let mode = std::fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let leftovers = std::fs::read_dir(dir.path()).expect("dir").count();
        assert_eq!(leftovers, 1, "no temporary file left behind");
    }

    #[test]
    fn login_refuses_to_overwrite_a_broken_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(&path, "{not json").expect("write");
        assert!(login("h", "u", &Secret::new("p"), Some(&path)).is_err());
        assert_eq!(std::fs::read_to_string(&path).expect("read"), "{not json");
    }

    #[test]
    fn hub_logins_use_dockers_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/config.json");
        login("docker.io", "u", &Secret::new("p"), Some(&path)).expect("login");
        let written: Value =
            serde_json::from_slice(&std::fs::read(&path).expect("read")).expect("json");
        assert!(written["auths"]["https://index.docker.io/v1/"]["auth"].is_string());
    }
}
