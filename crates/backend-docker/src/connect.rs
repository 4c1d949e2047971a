//! Connecting: a bollard client for the resolved endpoint, and what the daemon says about itself.
//!
//! The first request to a daemon (`/_ping`) is bounded by [`DockerOptions::ping_timeout`], so a daemon that is
//! missing, refuses connections or never answers is an `EngineUnavailable` error within that time, never a
//! hang. The daemon's facts (version, API version, OS, BuildKit, rootless) are then asked once and kept.

use std::time::Duration;

use berth_core::{Error, ErrorKind, Result};
use bollard::{Docker, API_DEFAULT_VERSION};

use crate::endpoint::Endpoint;
use crate::errors::{client_error, Op};
use crate::{DockerEngine, DockerOptions, ENGINE};

/// bollard's timeout for short requests (inspect, tag, remove...), in seconds.
const REQUEST_TIMEOUT: u64 = 120;
/// The first API version with BuildKit (`/build?version=2` and `/session`, dockerd 18.09).
const BUILDKIT_API: (u32, u32) = (1, 39);

/// What the daemon said about itself.
#[derive(Debug, Clone)]
pub(crate) struct Daemon {
    pub(crate) version: String,
    pub(crate) api_version: String,
    pub(crate) os: String,
    pub(crate) buildkit: bool,
    pub(crate) rootless: bool,
    /// Podman's Docker-compatible API: it builds with buildah and has no BuildKit session endpoint.
    pub(crate) podman: bool,
    /// Where the daemon keeps images, containers and BuildKit's cache (`DockerRootDir`, `--data-root`): the
    /// file system a build fills.
    pub(crate) root_dir: String,
    /// The storage driver (`Driver`): `overlay2` for the classic image store, a snapshotter's name
    /// (`overlayfs`) with the containerd image store.
    pub(crate) driver: String,
}

impl DockerEngine {
    /// A client for the daemon named by `options` (or the environment), without contacting it yet.
    ///
    /// Fails at once for a malformed host, unreadable TLS files or a unix socket that does not exist.
    pub fn new(options: DockerOptions) -> Result<DockerEngine> {
        let crate::context::Resolved { endpoint, context } = crate::context::resolve(&options)?;
        let name = endpoint.display();
        let client = match &endpoint {
            Endpoint::Unix(path) => Docker::connect_with_unix(
                &path.to_string_lossy(),
                REQUEST_TIMEOUT,
                API_DEFAULT_VERSION,
            ),
            Endpoint::Tcp { addr, tls: None } => {
                Docker::connect_with_http(addr, REQUEST_TIMEOUT, API_DEFAULT_VERSION)
            }
            Endpoint::Tcp {
                addr,
                tls: Some(files),
            } => Docker::connect_with_ssl(
                addr,
                &files.key,
                &files.cert,
                &files.ca,
                REQUEST_TIMEOUT,
                API_DEFAULT_VERSION,
            ),
            Endpoint::Ssh(session) => ssh_client(session.clone(), options.ping_timeout),
        }
        .map_err(|e| {
            crate::remote::files_missing(&endpoint, &name)
                .unwrap_or_else(|| client_error(e, Op::Connect, &name))
        })?;
        Ok(DockerEngine {
            client,
            endpoint,
            context,
            options,
            daemon: tokio::sync::OnceCell::new(),
        })
    }

    /// [`DockerEngine::new`], then a first exchange with the daemon (version, API negotiation, info), so an
    /// unreachable daemon is reported here, within [`DockerOptions::ping_timeout`].
    pub async fn connect(options: DockerOptions) -> Result<DockerEngine> {
        let engine = DockerEngine::new(options)?;
        engine.daemon().await?;
        Ok(engine)
    }

    /// The daemon's facts, asked on first use.
    pub(crate) async fn daemon(&self) -> Result<&Daemon> {
        self.daemon.get_or_try_init(|| self.ask_daemon()).await
    }

    async fn ask_daemon(&self) -> Result<Daemon> {
        let name = self.endpoint_name();
        // Only the first contact is bounded by the ping timeout: it is what tells a missing daemon from a
        // slow one (Podman's compat API takes most of a second per request).
        let timeout = self.options.ping_timeout;
        let failed = match tokio::time::timeout(timeout, self.client.ping()).await {
            Ok(Ok(_)) => None,
            Ok(Err(e)) => Some(client_error(e, Op::Connect, &name)),
            Err(_) => Some(unanswered(&name, timeout)),
        };
        if let Some(error) = failed {
            // a daemon over the network: dial it again to say which of its many failures this is
            return Err(crate::remote::explain(&self.endpoint, &name, timeout, error).await);
        }
        let client = self
            .client
            .clone()
            .negotiate_version()
            .await
            .map_err(|e| client_error(e, Op::Connect, &name))?;
        let version = client
            .version()
            .await
            .map_err(|e| client_error(e, Op::Connect, &name))?;
        let info = client
            .info()
            .await
            .map_err(|e| client_error(e, Op::Connect, &name))?;
        let api_version = version.api_version.unwrap_or_default();
        let os = version
            .os
            .or(info.os_type)
            .unwrap_or_default()
            .to_ascii_lowercase();
        let podman = version
            .components
            .unwrap_or_default()
            .iter()
            .any(|c| c.name.starts_with("Podman"));
        let buildkit = !podman && os == "linux" && api_at_least(&api_version, BUILDKIT_API);
        let rootless = info
            .security_options
            .unwrap_or_default()
            .iter()
            .any(|o| o.split(',').any(|field| field == "name=rootless"));
        Ok(Daemon {
            root_dir: info.docker_root_dir.unwrap_or_default(),
            driver: info.driver.unwrap_or_default(),
            version: version.version.unwrap_or_default(),
            api_version,
            os,
            buildkit,
            rootless,
            podman,
        })
    }
}

/// A bollard client whose every connection is `docker system dial-stdio` on the engine's one SSH session
/// (bollard's own ssh transport starts an ssh master per connection and accepts unknown host keys; this one
/// keeps the user's host key checking and never prompts, see [`berth_http::ssh`]).
fn ssh_client(
    session: std::sync::Arc<berth_http::ssh::SharedSession>,
    login_timeout: Duration,
) -> std::result::Result<Docker, bollard::errors::Error> {
    let address = session.target().display();
    let transport = move |request: bollard::BollardRequest| {
        let session = session.clone();
        async move {
            let (mut parts, body) = request.into_parts();
            // bollard writes `ssh://host/path`; the daemon wants the path only, and a Host header
            let path = parts
                .uri
                .path_and_query()
                .map_or("/", |p| p.as_str())
                .parse()
                .map_err(http::Error::from)?;
            parts.uri = path;
            parts.headers.insert(
                http::header::HOST,
                http::HeaderValue::from_static(crate::dial::HOST_HEADER),
            );
            let stream = session
                .get(login_timeout)
                .await?
                .stdio(crate::dial::DIAL_STDIO)?;
            let exchange =
                berth_http::client::send(stream, http::Request::from_parts(parts, body)).await?;
            Ok(exchange.response)
        }
    };
    Docker::connect_with_custom_transport(
        transport,
        Some(address),
        REQUEST_TIMEOUT,
        API_DEFAULT_VERSION,
    )
}

fn unanswered(endpoint: &str, timeout: Duration) -> Error {
    Error::new(
        ErrorKind::EngineUnavailable,
        format!(
            "the Docker daemon at {endpoint} did not answer within {:.1}s",
            timeout.as_secs_f64()
        ),
    )
    .with_engine(ENGINE)
    .with_operation(Op::Connect)
    .with_hint(
        "start the daemon (`sudo systemctl start docker`, or run `dockerd`), \
         or point DOCKER_HOST at one that runs",
    )
}

fn api_at_least(version: &str, (major, minor): (u32, u32)) -> bool {
    let mut parts = version.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b) >= (major, minor),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_versions_compare_numerically() {
        assert!(api_at_least("1.41", BUILDKIT_API));
        assert!(api_at_least("1.100", BUILDKIT_API));
        assert!(!api_at_least("1.38", BUILDKIT_API));
        assert!(!api_at_least("", BUILDKIT_API));
    }
}
