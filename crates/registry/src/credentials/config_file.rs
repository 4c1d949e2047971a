//! Docker's `config.json` and Podman's `auth.json`: reading credentials, matching registry keys the way the
//! Docker CLI does, and Docker Hub's aliases.

use std::collections::BTreeMap;
use std::path::Path;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_core::engine::Secret;
use berth_core::{Error, Result};
use serde::Deserialize;

pub(crate) use berth_core::reference::DOCKER_HUB_KEY;

/// The parts of a Docker `config.json` (or Podman `auth.json`) that hold credentials.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct ConfigFile {
    #[serde(default)]
    pub(crate) auths: BTreeMap<String, AuthEntry>,
    #[serde(default, rename = "credHelpers")]
    pub(crate) cred_helpers: BTreeMap<String, String>,
    #[serde(default, rename = "credsStore")]
    pub(crate) creds_store: Option<String>,
}

/// One `auths` entry.
#[derive(Default, Deserialize)]
pub(crate) struct AuthEntry {
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    username: Option<String>,
    #[serde(default)]
    password: Option<String>,
}

/// Whether each field is set, never what it holds: `auth` and `password` are the credentials.
impl std::fmt::Debug for AuthEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let shown = |v: &Option<String>| v.as_ref().map(|_| "***");
        f.debug_struct("AuthEntry")
            .field("auth", &shown(&self.auth))
            .field("username", &self.username)
            .field("password", &shown(&self.password))
            .finish()
    }
}

/// What is wrong with a JSON document that may hold credentials, without quoting it: serde_json's messages
/// quote the offending value ("invalid type: string \"...\""), which may be a password.
pub(crate) fn json_problem(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "cannot be read",
        serde_json::error::Category::Syntax => "is not valid JSON",
        serde_json::error::Category::Data => "has a value of the wrong type",
        serde_json::error::Category::Eof => "ends early",
    };
    format!("{what} at line {} column {}", e.line(), e.column())
}

impl ConfigFile {
    /// Reads `path`; `None` if it does not exist, [`berth_core::ErrorKind::InvalidSpec`] if it is not valid.
    pub(crate) fn read(path: &Path) -> Result<Option<ConfigFile>> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        if text.iter().all(u8::is_ascii_whitespace) {
            return Ok(Some(ConfigFile::default()));
        }
        serde_json::from_slice(&text).map(Some).map_err(|e| {
            Error::invalid(format!(
                "{} is not a valid registry config: it {}",
                path.display(),
                json_problem(&e)
            ))
        })
    }

    /// The `credHelpers` helper for `host`, if one is configured.
    pub(crate) fn helper_for(&self, host: &str) -> Option<&str> {
        lookup(&self.cred_helpers, host).map(|(_, helper)| helper.as_str())
    }

    /// The user name and password stored in `auths` for `host`, and the key they were found under.
    pub(crate) fn auth_for(&self, host: &str) -> Result<Option<(String, String, Secret)>> {
        let Some((key, entry)) = lookup(&self.auths, host) else {
            return Ok(None);
        };
        if let Some(auth) = entry.auth.as_deref().filter(|a| !a.is_empty()) {
            let (user, pass) = decode_auth(auth).ok_or_else(|| {
                Error::invalid(format!(
                    "the `auth` stored for {key} is not base64 of user:password"
                ))
            })?;
            return Ok(Some((key.clone(), user, Secret::new(pass))));
        }
        match (&entry.username, &entry.password) {
            (Some(user), Some(pass)) if !user.is_empty() => {
                Ok(Some((key.clone(), user.clone(), Secret::new(pass.clone()))))
            }
            _ => Ok(None),
        }
    }
}

/// The entry of `map` for `host`: an exact key first, then any key naming the same host (`https://host`,
/// `http://host/v1/`, a Docker Hub alias), like the Docker CLI's `ConvertToHostname` matching.
fn lookup<'a, V>(map: &'a BTreeMap<String, V>, host: &str) -> Option<(&'a String, &'a V)> {
    if let Some(found) = map.get_key_value(host) {
        return Some(found);
    }
    if is_docker_hub(host) {
        if let Some(found) = map.get_key_value(DOCKER_HUB_KEY) {
            return Some(found);
        }
    }
    let want = normalize_host(host);
    map.iter().find(|(key, _)| normalize_host(key) == want)
}

/// A registry key reduced to its host: scheme and path dropped, lowercased, Docker Hub's aliases as `docker.io`.
pub(crate) fn normalize_host(key: &str) -> String {
    let key = key.trim();
    let key = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let host = key.split('/').next().unwrap_or(key).to_ascii_lowercase();
    if berth_core::reference::is_docker_hub(&host) {
        "docker.io".to_string()
    } else {
        host
    }
}

pub(crate) use berth_core::reference::is_docker_hub;

/// Whether two registry names (hosts or config keys) mean the same registry.
pub(crate) fn same_registry(a: &str, b: &str) -> bool {
    normalize_host(a) == normalize_host(b)
}

/// The key Docker stores credentials for `host` under, and sends to credential helpers.
pub(crate) fn server_key(host: &str) -> String {
    if is_docker_hub(host) {
        DOCKER_HUB_KEY.to_string()
    } else {
        normalize_host(host)
    }
}

/// `base64(user:password)` as Docker writes it.
pub(crate) fn encode_auth(user: &str, password: &str) -> String {
    STANDARD.encode(format!("{user}:{password}"))
}

fn decode_auth(auth: &str) -> Option<(String, String)> {
    let bytes = STANDARD.decode(auth.trim()).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (user, pass) = text.split_once(':')?;
    Some((user.to_string(), pass.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> ConfigFile {
        serde_json::from_str(json).expect("valid config")
    }

    #[test]
    fn keys_match_with_schemes_paths_and_hub_aliases() {
        let auth = encode_auth("u", "p:w");
        let cfg = config(&format!(
            r#"{{"auths": {{"https://reg.example:5000/v1/": {{"auth": "{auth}"}},
                "https://index.docker.io/v1/": {{"auth": "{auth}"}}}}}}"#
        ));
        let (key, user, pass) = cfg
            .auth_for("reg.example:5000")
            .expect("valid")
            .expect("found");
        assert_eq!(
            (key.as_str(), user.as_str(), pass.expose()),
            ("https://reg.example:5000/v1/", "u", "p:w")
        );
        for hub in ["docker.io", "index.docker.io", "registry-1.docker.io"] {
            assert!(cfg.auth_for(hub).expect("valid").is_some(), "{hub}");
        }
        assert!(cfg.auth_for("reg.example").expect("valid").is_none());
    }

    #[test]
    fn exact_key_wins_and_bad_auth_is_invalid() {
        let cfg = config(&format!(
            r#"{{"auths": {{"http://h:1": {{"auth": "{}"}}, "h:1": {{"auth": "{}"}}}}}}"#,
            encode_auth("old", "x"),
            encode_auth("new", "y")
        ));
        let (_, user, _) = cfg.auth_for("h:1").expect("valid").expect("found");
        assert_eq!(user, "new");
        let bad = config(r#"{"auths": {"h": {"auth": "!!!"}}}"#);
        assert!(bad.auth_for("h").is_err());
        let empty = config(r#"{"auths": {"h": {}}, "credsStore": "pass"}"#);
        assert!(empty.auth_for("h").expect("valid").is_none());
    }

    #[test]
    fn errors_and_debug_never_quote_credentials() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        // a password where a mapping belongs: serde_json's own message would quote it
        std::fs::write(&path, r#"{"auths": {"h": {"password": ["s3cret-pw"]}}}"#).expect("write");
        let err = ConfigFile::read(&path).expect_err("invalid");
        let printed = format!("{err} {err:?}");
        assert!(printed.contains("line 1 column"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
        std::fs::write(&path, r#"{"auths": "s3cret-pw"}"#).expect("write");
        let err = ConfigFile::read(&path).expect_err("invalid");
        assert!(!format!("{err} {err:?}").contains("s3cret"), "{err:?}");

        let cfg = config(&format!(
            r#"{{"auths": {{"h": {{"auth": "{}", "username": "u", "password": "s3cret-pw"}}}}}}"#,
            encode_auth("u", "s3cret-pw")
        ));
        let printed = format!("{cfg:?}");
        assert!(
            printed.contains("***") && printed.contains("\"u\""),
            "{printed}"
        );
        assert!(!printed.contains("s3cret") && !printed.contains(&encode_auth("u", "s3cret-pw")));
    }

    #[test]
    fn helpers_match_by_host() {
        let cfg = config(r#"{"credHelpers": {"https://ghcr.io": "gh"}}"#);
        assert_eq!(cfg.helper_for("ghcr.io"), Some("gh"));
        assert_eq!(server_key("index.docker.io"), DOCKER_HUB_KEY);
        assert_eq!(server_key("https://ghcr.io/"), "ghcr.io");
    }
}
