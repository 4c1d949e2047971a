//! Where the daemon is, decided the way the docker CLI decides it.
//!
//! An explicit host wins; otherwise `DOCKER_HOST`; otherwise the default socket. `tcp://` uses TLS when
//! `DOCKER_TLS_VERIFY` is set (non-empty), with `ca.pem`, `cert.pem` and `key.pem` from `DOCKER_CERT_PATH`
//! (default `~/.docker`). The environment variables this crate reads are named here and nowhere else.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_core::{Error, Result};
use berth_http::ssh::{SharedSession, SshTarget};

use crate::ENGINE;

/// Environment variable naming the daemon (`unix:///path`, `tcp://host:port`, `ssh://user@host`).
pub const DOCKER_HOST: &str = "DOCKER_HOST";
/// Environment variable that turns on TLS (with server verification) for `tcp://` hosts.
pub const DOCKER_TLS_VERIFY: &str = "DOCKER_TLS_VERIFY";
/// Environment variable naming the folder with `ca.pem`, `cert.pem` and `key.pem`.
pub const DOCKER_CERT_PATH: &str = "DOCKER_CERT_PATH";
/// The socket dockerd listens on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Client certificate files for a TLS daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA that signed the daemon's certificate.
    pub ca: PathBuf,
    /// The client certificate.
    pub cert: PathBuf,
    /// The client certificate's key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `cert.pem` and `key.pem` in `dir`, as the docker CLI names them.
    pub fn in_dir(dir: &Path) -> TlsFiles {
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }
}

/// A parsed daemon address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Endpoint {
    /// A unix socket.
    Unix(PathBuf),
    /// TCP, plain or TLS; `addr` is `host:port`.
    Tcp { addr: String, tls: Option<TlsFiles> },
    /// `docker system dial-stdio` over ssh, every connection riding on one SSH session.
    Ssh(Arc<SharedSession>),
}

impl Endpoint {
    /// Resolves the endpoint from explicit settings, falling back to the environment like the docker CLI.
    pub(crate) fn resolve(host: Option<&str>, tls: Option<&TlsFiles>) -> Result<Endpoint> {
        let env_host = std::env::var(DOCKER_HOST).ok().filter(|h| !h.is_empty());
        let host = host.map(str::to_string).or(env_host);
        let Some(host) = host else {
            return Ok(Endpoint::Unix(PathBuf::from(DEFAULT_SOCKET)));
        };
        let tls = tls.cloned().or_else(tls_from_env);
        Endpoint::parse(&host, tls)
    }

    /// Parses `unix://`, `tcp://` (or `http://`/`https://`) and `ssh://` addresses.
    pub(crate) fn parse(host: &str, tls: Option<TlsFiles>) -> Result<Endpoint> {
        let invalid = |why: &str| {
            Error::invalid(format!("docker host `{host}`: {why}"))
                .with_engine(ENGINE)
                .with_operation(berth_core::Operation::Connect)
                .with_hint("set DOCKER_HOST to unix:///var/run/docker.sock, tcp://HOST:PORT or ssh://USER@HOST")
        };
        if let Some(path) = host.strip_prefix("unix://") {
            if path.is_empty() {
                return Err(invalid("the socket path is empty"));
            }
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if host.starts_with('/') {
            return Ok(Endpoint::Unix(PathBuf::from(host)));
        }
        let (scheme, rest) = host
            .split_once("://")
            .ok_or_else(|| invalid("it names no scheme"))?;
        if scheme == "npipe" {
            return Err(Error::unsupported(
                ENGINE,
                "connect",
                format!("docker host `{host}`: named pipes exist only on Windows"),
            ));
        }
        let authority = rest.trim_end_matches('/');
        if authority.is_empty() || authority.contains('/') {
            return Err(invalid("expected SCHEME://HOST[:PORT] with no path"));
        }
        match scheme {
            "tcp" | "http" | "https" => {
                let tls = if scheme == "http" { None } else { tls };
                let tls = match (scheme, tls) {
                    ("https", None) => Some(TlsFiles::in_dir(&default_cert_dir())),
                    (_, tls) => tls,
                };
                let default_port = if tls.is_some() { 2376 } else { 2375 };
                let addr = if has_port(authority) {
                    authority.to_string()
                } else {
                    format!("{authority}:{default_port}")
                };
                Ok(Endpoint::Tcp { addr, tls })
            }
            "ssh" => {
                let (destination, port) = match authority.rsplit_once(':') {
                    Some((dest, port)) if has_port(authority) => {
                        let port = port
                            .parse::<u16>()
                            .map_err(|_| invalid("the ssh port is out of range"))?;
                        (dest.to_string(), Some(port))
                    }
                    _ => (authority.to_string(), None),
                };
                let target = SshTarget {
                    destination,
                    port,
                    identity: None,
                };
                Ok(Endpoint::Ssh(Arc::new(SharedSession::new(target, None))))
            }
            other => Err(invalid(&format!("unknown scheme `{other}`"))),
        }
    }

    /// The address as the docker CLI would print it.
    pub(crate) fn display(&self) -> String {
        match self {
            Endpoint::Unix(path) => format!("unix://{}", path.display()),
            Endpoint::Tcp { addr, tls: None } => format!("tcp://{addr}"),
            Endpoint::Tcp { addr, tls: Some(_) } => format!("tcp://{addr} (tls)"),
            Endpoint::Ssh(session) => session.target().display(),
        }
    }
}

impl Endpoint {
    /// The address alone, as `DOCKER_HOST` would hold it (`tcp://HOST:PORT`, without the TLS mark).
    pub(crate) fn address(&self) -> String {
        match self {
            Endpoint::Tcp { addr, .. } => format!("tcp://{addr}"),
            other => other.display(),
        }
    }
}

fn has_port(authority: &str) -> bool {
    match authority.rsplit_once(':') {
        Some((host, port)) => {
            port.chars().all(|c| c.is_ascii_digit())
                && !port.is_empty()
                && (!host.contains(':') || host.ends_with(']'))
        }
        None => false,
    }
}

fn tls_from_env() -> Option<TlsFiles> {
    let verify = std::env::var(DOCKER_TLS_VERIFY).ok()?;
    if verify.is_empty() {
        return None;
    }
    let dir = std::env::var(DOCKER_CERT_PATH)
        .ok()
        .filter(|d| !d.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(default_cert_dir);
    Some(TlsFiles::in_dir(&dir))
}

fn default_cert_dir() -> PathBuf {
    let home = std::env::var_os("HOME").unwrap_or_default();
    PathBuf::from(home).join(".docker")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_schemes_the_cli_accepts() {
        assert_eq!(
            Endpoint::parse("unix:///run/d.sock", None).expect("unix"),
            Endpoint::Unix(PathBuf::from("/run/d.sock"))
        );
        assert_eq!(
            Endpoint::parse("tcp://10.0.0.1", None).expect("tcp"),
            Endpoint::Tcp {
                addr: "10.0.0.1:2375".into(),
                tls: None
            }
        );
        let tls = TlsFiles::in_dir(Path::new("/certs"));
        assert_eq!(
            Endpoint::parse("tcp://host", Some(tls.clone())).expect("tls"),
            Endpoint::Tcp {
                addr: "host:2376".into(),
                tls: Some(tls)
            }
        );
        let ssh = |destination: &str, port| {
            let target = SshTarget {
                destination: destination.into(),
                port,
                identity: None,
            };
            Endpoint::Ssh(Arc::new(SharedSession::new(target, None)))
        };
        let parsed = Endpoint::parse("ssh://me@box:2222", None).expect("ssh");
        assert_eq!(parsed, ssh("me@box", Some(2222)));
        assert_eq!(parsed.display(), "ssh://me@box:2222");
        assert_eq!(
            Endpoint::parse("ssh://me@box", None).expect("ssh"),
            ssh("me@box", None)
        );
    }

    #[test]
    fn refuses_what_it_cannot_reach() {
        for bad in ["", "localhost:2375", "ftp://x", "tcp://h/path", "unix://"] {
            assert!(Endpoint::parse(bad, None).is_err(), "{bad}");
        }
        let err = Endpoint::parse("npipe:////./pipe/docker_engine", None).expect_err("npipe");
        assert_eq!(err.kind(), berth_core::ErrorKind::Unsupported);
    }
}
