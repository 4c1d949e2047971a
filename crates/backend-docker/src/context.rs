//! Docker contexts, resolved as the docker CLI resolves them (`cli/command/cli.go`, `resolveContextName`).
//!
//! A host someone named (`DOCKER_HOST`, or berth's `engine.docker.host`) wins and means the default context;
//! else the context named by `DOCKER_CONTEXT` (or berth's `engine.docker.context`); else `currentContext` in
//! `config.json` (`docker context use NAME` writes it) in `$DOCKER_CONFIG`, default `~/.docker`; else the
//! default context, which is the default socket. A named context is read from the CLI's store:
//! `contexts/meta/<sha256 of the name>/meta.json` gives `Endpoints.docker.Host` and `SkipTLSVerify`, and
//! `contexts/tls/<sha256 of the name>/docker/{ca,cert,key}.pem` its TLS files. The environment's TLS variables
//! belong to the default context and are not read for a named one, as with the docker CLI.

use std::path::{Path, PathBuf};

use berth_core::{Error, ErrorKind, Operation, Result};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::endpoint::{Endpoint, TlsFiles, DEFAULT_SOCKET, DOCKER_HOST};
use crate::{DockerOptions, ENGINE};

/// Environment variable naming the context to use (over `currentContext`, under `DOCKER_HOST`).
pub const DOCKER_CONTEXT: &str = "DOCKER_CONTEXT";
/// Environment variable naming the docker CLI's folder (`config.json`, `contexts/`); default `~/.docker`.
pub const DOCKER_CONFIG: &str = "DOCKER_CONFIG";
/// The context that means "`DOCKER_HOST` and the TLS variables, else the default socket"; it has no files.
const DEFAULT_CONTEXT: &str = "default";

/// The daemon's address and, when a named context gave it, where that context was named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Resolved {
    pub(crate) endpoint: Endpoint,
    /// `context `NAME` from DOCKER_CONTEXT`, for messages.
    pub(crate) context: Option<String>,
}

/// Where the daemon is for `options`, falling back to the environment and the CLI's files like the docker CLI.
pub(crate) fn resolve(options: &DockerOptions) -> Result<Resolved> {
    resolve_with(options, &|name| std::env::var(name).ok())
}

/// [`resolve`] with `env` as the environment.
fn resolve_with(options: &DockerOptions, env: &dyn Fn(&str) -> Option<String>) -> Result<Resolved> {
    let env = |name: &str| env(name).filter(|v| !v.is_empty());
    let host = options.host.clone().or_else(|| env(DOCKER_HOST));
    if host.is_some() {
        let endpoint = Endpoint::resolve(host.as_deref(), options.tls.as_ref())?;
        return Ok(Resolved {
            endpoint,
            context: None,
        });
    }
    let dir = match env(DOCKER_CONFIG) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(env("HOME").unwrap_or_default()).join(".docker"),
    };
    let named = match (&options.context, env(DOCKER_CONTEXT)) {
        (Some(name), _) => Some((name.clone(), "engine.docker.context".to_string())),
        (None, Some(name)) => Some((name, DOCKER_CONTEXT.to_string())),
        (None, None) => current_context(&dir)?.map(|name| {
            (
                name,
                format!("currentContext in {}", config_file(&dir).display()),
            )
        }),
    };
    match named {
        Some((name, _)) if name == DEFAULT_CONTEXT => default(),
        Some((name, from)) => Ok(Resolved {
            endpoint: load(&dir, &name, &from)?,
            context: Some(format!("context `{name}` from {from}")),
        }),
        None => default(),
    }
}

fn default() -> Result<Resolved> {
    Ok(Resolved {
        endpoint: Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)),
        context: None,
    })
}

fn config_file(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

/// `currentContext` of `config.json` in `dir`; none when the file or the key is missing.
fn current_context(dir: &Path) -> Result<Option<String>> {
    let file = config_file(dir);
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(context_error(
                format!("cannot read {}: {e}", file.display()),
                None,
            ))
        }
    };
    let config: Value = serde_json::from_str(&text).map_err(|e| {
        context_error(
            format!("{} is not valid JSON: {e}", file.display()),
            Some("fix the file, or set DOCKER_CONFIG to the folder of a good one".into()),
        )
    })?;
    Ok(config["currentContext"]
        .as_str()
        .filter(|name| !name.is_empty())
        .map(str::to_string))
}

/// The folder name of context `name` in the store: the hex SHA-256 of the name.
fn context_id(name: &str) -> String {
    Sha256::digest(name.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Context `name` (named by `from`) from the store in `dir`, as an endpoint.
fn load(dir: &Path, name: &str, from: &str) -> Result<Endpoint> {
    let valid = name.len() > 1
        && name.chars().enumerate().all(|(i, c)| {
            c.is_ascii_alphanumeric() || (i > 0 && matches!(c, '_' | '.' | '+' | '-'))
        });
    if !valid {
        return Err(context_error(
            format!("docker context `{name}` (from {from}) is not a valid context name"),
            Some("`docker context ls` lists the contexts there are".into()),
        ));
    }
    let id = context_id(name);
    let meta = dir.join("contexts/meta").join(&id).join("meta.json");
    let text = std::fs::read_to_string(&meta).map_err(|e| {
        context_error(
            format!(
                "docker context `{name}` (from {from}) does not exist: {}: {e}",
                meta.display()
            ),
            Some(format!(
                "`docker context ls` lists the contexts there are (store: {}); create it with \
                 `docker context create {name} --docker host=...`, or unset {from}",
                dir.join("contexts").display()
            )),
        )
    })?;
    let meta_json: Value = serde_json::from_str(&text).map_err(|e| {
        context_error(
            format!("{} is not valid JSON: {e}", meta.display()),
            Some(format!(
                "recreate the context (`docker context rm {name}`, then `docker context create`)"
            )),
        )
    })?;
    let docker = &meta_json["Endpoints"]["docker"];
    let Some(host) = docker["Host"].as_str().filter(|h| !h.is_empty()) else {
        return Err(context_error(
            format!("docker context `{name}` (from {from}) has no Docker endpoint (Endpoints.docker.Host in {})", meta.display()),
            Some(format!("`docker context update {name} --docker host=...`")),
        ));
    };
    let tls_dir = dir.join("contexts/tls").join(&id).join("docker");
    let files = TlsFiles::in_dir(&tls_dir);
    let present = [&files.ca, &files.cert, &files.key].map(|f| f.is_file());
    if docker["SkipTLSVerify"].as_bool() == Some(true) {
        return Err(Error::unsupported(
            ENGINE,
            "connect",
            format!("docker context `{name}` (from {from}) turns off TLS verification (SkipTLSVerify), which berth does not do"),
        )
        .with_hint(format!(
            "give the context the daemon's CA and a client certificate (`docker context update {name} \
             --docker host={host},ca=CA.pem,cert=CERT.pem,key=KEY.pem`)"
        )));
    }
    let tls = match present {
        [false, false, false] => None,
        [true, true, true] => Some(files),
        _ => {
            return Err(Error::unsupported(
                ENGINE,
                "connect",
                format!(
                    "docker context `{name}` (from {from}) has only some of ca.pem, cert.pem and key.pem in {}: \
                     berth verifies the daemon with the CA and presents the client certificate, and needs all three",
                    tls_dir.display()
                ),
            )
            .with_hint(format!(
                "`docker context update {name} --docker host={host},ca=CA.pem,cert=CERT.pem,key=KEY.pem`"
            )))
        }
    };
    Endpoint::parse(host, tls)
}

fn context_error(message: String, hint: Option<String>) -> Error {
    let error = Error::new(ErrorKind::InvalidSpec, message)
        .with_engine(ENGINE)
        .with_operation(Operation::Connect);
    match hint {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A context store in `dir` as `docker context create` leaves it.
    fn store(dir: &Path, name: &str, meta: &str, tls: &[&str]) {
        let id = context_id(name);
        let meta_dir = dir.join("contexts/meta").join(&id);
        std::fs::create_dir_all(&meta_dir).expect("mkdir");
        std::fs::write(meta_dir.join("meta.json"), meta).expect("meta.json");
        let tls_dir = dir.join("contexts/tls").join(&id).join("docker");
        std::fs::create_dir_all(&tls_dir).expect("mkdir");
        for file in tls {
            std::fs::write(tls_dir.join(file), "pem").expect("pem");
        }
    }

    fn meta(name: &str, host: &str, skip: bool) -> String {
        format!(
            r#"{{"Name":"{name}","Metadata":{{}},"Endpoints":{{"docker":{{"Host":"{host}","SkipTLSVerify":{skip}}}}}}}"#
        )
    }

    fn resolve_in(dir: &Path, vars: &[(&str, &str)], options: DockerOptions) -> Result<Resolved> {
        let dir = dir.display().to_string();
        let vars: Vec<(String, String)> = std::iter::once((DOCKER_CONFIG.to_string(), dir))
            .chain(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .collect();
        resolve_with(&options, &|name| {
            vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })
    }

    #[test]
    fn a_context_lives_under_the_sha256_of_its_name() {
        assert_eq!(
            context_id("remote"),
            // `printf remote | sha256sum`, the folder `docker context create remote` makes
            "b71199ebd070b36beab7317920c2c2f1d777df8d05e5527d8458fda57cb17a7a"
        );
    }

    #[test]
    fn precedence_is_the_docker_clis() {
        let dir = tempfile::tempdir().expect("tempdir");
        store(
            dir.path(),
            "alpha",
            &meta("alpha", "tcp://10.0.0.1:2376", false),
            &["ca.pem", "cert.pem", "key.pem"],
        );
        store(
            dir.path(),
            "beta",
            &meta("beta", "unix:///run/b.sock", false),
            &[],
        );
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"currentContext":"alpha"}"#,
        )
        .expect("config");
        let options = DockerOptions::default;
        // currentContext, with the context's TLS files
        let current = resolve_in(dir.path(), &[], options()).expect("current");
        let tls = TlsFiles::in_dir(
            &dir.path()
                .join("contexts/tls")
                .join(context_id("alpha"))
                .join("docker"),
        );
        assert_eq!(
            current.endpoint,
            Endpoint::Tcp {
                addr: "10.0.0.1:2376".into(),
                tls: Some(tls)
            }
        );
        assert!(current
            .context
            .unwrap_or_default()
            .contains("currentContext in"));
        // DOCKER_CONTEXT over currentContext
        let env = resolve_in(dir.path(), &[(DOCKER_CONTEXT, "beta")], options()).expect("env");
        assert_eq!(env.endpoint, Endpoint::Unix("/run/b.sock".into()));
        // berth's setting over DOCKER_CONTEXT; `default` is the default socket
        let set = DockerOptions {
            context: Some("default".into()),
            ..options()
        };
        let default = resolve_in(dir.path(), &[(DOCKER_CONTEXT, "beta")], set).expect("default");
        assert_eq!(default.endpoint, Endpoint::Unix(DEFAULT_SOCKET.into()));
        assert_eq!(default.context, None);
        // DOCKER_HOST over every context
        let host = resolve_in(
            dir.path(),
            &[
                (DOCKER_CONTEXT, "alpha"),
                (DOCKER_HOST, "unix:///run/h.sock"),
            ],
            options(),
        )
        .expect("host");
        assert_eq!(host.endpoint, Endpoint::Unix("/run/h.sock".into()));
        // nothing named: the default socket
        std::fs::write(dir.path().join("config.json"), "{}").expect("config");
        let none = resolve_in(dir.path(), &[], options()).expect("none");
        assert_eq!(none.endpoint, Endpoint::Unix(DEFAULT_SOCKET.into()));
    }

    #[test]
    fn a_context_berth_cannot_honour_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        store(dir.path(), "skip", &meta("skip", "tcp://h:2376", true), &[]);
        store(
            dir.path(),
            "half",
            &meta("half", "tcp://h:2376", false),
            &["ca.pem"],
        );
        let options = DockerOptions::default;
        let err = |name: &str| {
            resolve_in(dir.path(), &[(DOCKER_CONTEXT, name)], options()).expect_err(name)
        };
        assert_eq!(err("skip").kind(), ErrorKind::Unsupported);
        assert_eq!(err("half").kind(), ErrorKind::Unsupported);
        let missing = err("gone");
        assert_eq!(missing.kind(), ErrorKind::InvalidSpec);
        assert!(
            missing
                .message()
                .contains("`gone` (from DOCKER_CONTEXT) does not exist"),
            "{missing}"
        );
        assert!(
            missing
                .hint()
                .unwrap_or_default()
                .contains("docker context ls"),
            "{missing}"
        );
        assert_eq!(
            err("-x").kind(),
            ErrorKind::InvalidSpec,
            "not a context name"
        );
        std::fs::write(dir.path().join("config.json"), "{").expect("config");
        assert_eq!(
            resolve_in(dir.path(), &[], options())
                .expect_err("bad json")
                .kind(),
            ErrorKind::InvalidSpec
        );
    }
}
