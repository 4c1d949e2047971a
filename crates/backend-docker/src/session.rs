//! The BuildKit session: what the daemon asks the client for while it builds.
//!
//! A BuildKit build on dockerd names a session; the client opens it with `POST /session`, the daemon upgrades
//! the connection to HTTP/2 and then calls gRPC services the client serves on it. berth serves registry
//! credentials (`moby.filesync.v1.Auth/Credentials`, so base and helper images come from authenticated
//! registries), build secrets (`moby.buildkit.secrets.v1.Secrets/GetSecret`, read from the plan's files only
//! when a `RUN --mount=type=secret` step asks, never copied anywhere else) and the health check the daemon uses
//! to see the client is still there. bollard's own session offers only credentials, hence this module.
//!
//! When the build's context goes through the session ([`crate::filesync`]), it serves that too
//! (`moby.filesync.v1.FileSync/DiffCopy`).
//!
//! Token-exchange methods (`FetchToken`, `GetTokenAuthority`...) are not advertised, so the daemon asks for
//! plain credentials and talks to the registry itself.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::pin::Pin;
use std::task::{Context, Poll};

use berth_core::engine::Credentials;
use bollard::health::health_server::{Health, HealthServer};
use bollard::health::{
    health_check_response::ServingStatus, HealthCheckRequest, HealthCheckResponse,
    HealthListRequest, HealthListResponse,
};
use bollard::moby::buildkit::secrets::v1::secrets_server::{Secrets, SecretsServer};
use bollard::moby::buildkit::secrets::v1::{GetSecretRequest, GetSecretResponse};
use bollard::moby::filesync::packet::file_sync_server::FileSyncServer;
use bollard::moby::filesync::v1::auth_server::{Auth, AuthServer};
use bollard::moby::filesync::v1::{
    CredentialsRequest, CredentialsResponse, FetchTokenRequest, FetchTokenResponse,
    GetTokenAuthorityRequest, GetTokenAuthorityResponse, VerifyTokenAuthorityRequest,
    VerifyTokenAuthorityResponse,
};
use http_body_util::Empty;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::task::JoinHandle;
use tonic::{Request, Response, Status};

use crate::dial::{dial, HOST_HEADER};
use crate::endpoint::Endpoint;
use crate::filesync::ContextSync;

/// The gRPC method serving the build context, announced only when the session serves it.
const DIFF_COPY: &str = "/moby.filesync.v1.FileSync/DiffCopy";
/// The gRPC methods berth serves, announced to the daemon one header each.
const METHODS: [&str; 3] = [
    "/moby.filesync.v1.Auth/Credentials",
    "/moby.buildkit.secrets.v1.Secrets/GetSecret",
    "/grpc.health.v1.Health/Check",
];
/// Secrets larger than this are refused (BuildKit's own limit is 500 KiB).
const MAX_SECRET: u64 = 500 * 1024;

/// An open session; the daemon can call it until it is dropped.
pub(crate) struct Session {
    /// The id to pass as the build's `session` parameter.
    pub(crate) id: String,
    server: JoinHandle<()>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// Opens a session serving `credentials`, the secrets `secrets` (id → file) and, when given, the build context.
pub(crate) async fn open(
    endpoint: &Endpoint,
    connect_timeout: std::time::Duration,
    credentials: &[Credentials],
    secrets: HashMap<String, PathBuf>,
    context: Option<ContextSync>,
) -> io::Result<Session> {
    let id = new_id();
    let shared_key = context
        .as_ref()
        .map(ContextSync::shared_key)
        .unwrap_or_default();
    let stream = dial(endpoint, connect_timeout).await?;
    let mut request = http::Request::post("/session")
        .header(http::header::HOST, HOST_HEADER)
        .header(http::header::CONNECTION, "Upgrade")
        .header(http::header::UPGRADE, "h2c")
        .header("X-Docker-Expose-Session-Uuid", &id)
        .header("X-Docker-Expose-Session-Name", "berth")
        .header("X-Docker-Expose-Session-Sharedkey", shared_key);
    if context.is_some() {
        request = request.header("X-Docker-Expose-Session-Grpc-Method", DIFF_COPY);
    }
    for method in METHODS {
        request = request.header("X-Docker-Expose-Session-Grpc-Method", method);
    }
    let request = request
        .body(Empty::<bytes::Bytes>::new())
        .map_err(io::Error::other)?;
    let berth_http::client::Exchange {
        response,
        connection,
    } = berth_http::client::send(stream, request).await?;
    if response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
        connection.abort();
        return Err(io::Error::other(format!(
            "the daemon refused a BuildKit session: HTTP {}",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response)
        .await
        .map_err(io::Error::other)?;
    let transport = Transport(TokioIo::new(upgraded));
    let auth = AuthProvider::new(credentials);
    let secrets = SecretProvider(secrets);
    let server = tokio::spawn(async move {
        let incoming = futures_util::stream::iter([Ok::<_, io::Error>(transport)]);
        // The session ends when the daemon closes the connection or the build drops it; either way there is
        // no one left to tell about an error here.
        let _ = tonic::transport::Server::builder()
            .add_service(HealthServer::new(HealthProvider))
            .add_service(AuthServer::new(auth))
            .add_service(SecretsServer::new(secrets))
            .add_optional_service(context.map(FileSyncServer::new))
            .serve_with_incoming(incoming)
            .await;
    });
    Ok(Session { id, server })
}

/// A session id: unique per build, like the CLI's random ids.
fn new_id() -> String {
    let alphabet: Vec<char> = ('a'..='z').chain('0'..='9').collect();
    let tail: String = (0..25)
        .map(|_| alphabet[fastrand::usize(..alphabet.len())])
        .collect();
    format!("berth{tail}")
}

/// The upgraded connection, as tonic wants it.
struct Transport(TokioIo<hyper::upgrade::Upgraded>);

impl tonic::transport::server::Connected for Transport {
    type ConnectInfo = ();

    fn connect_info(&self) -> Self::ConnectInfo {}
}

impl AsyncRead for Transport {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Transport {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    // Forwarded so that h2 writes each frame's header and payload in one `writev`: without them it writes the
    // 9-byte header and the payload of every `DATA` frame in two calls, and the daemon reads them in two.
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

struct HealthProvider;

#[tonic::async_trait]
impl Health for HealthProvider {
    async fn check(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<HealthCheckResponse>, Status> {
        Ok(Response::new(HealthCheckResponse {
            status: ServingStatus::Serving as i32,
        }))
    }

    async fn list(
        &self,
        _request: Request<HealthListRequest>,
    ) -> Result<Response<HealthListResponse>, Status> {
        Err(Status::unimplemented("list"))
    }

    type WatchStream = futures_util::stream::Empty<Result<HealthCheckResponse, Status>>;

    async fn watch(
        &self,
        _request: Request<HealthCheckRequest>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        Err(Status::unimplemented("watch"))
    }
}

/// Registry credentials by host, as BuildKit asks for them (`registry-1.docker.io` for Docker Hub).
struct AuthProvider(HashMap<String, (String, String)>);

impl AuthProvider {
    fn new(credentials: &[Credentials]) -> Self {
        let mut hosts = HashMap::new();
        for c in credentials {
            let pair = (c.username.clone(), c.password.expose().to_string());
            for host in crate::registry_hosts(&c.registry) {
                hosts.insert(host, pair.clone());
            }
        }
        AuthProvider(hosts)
    }
}

#[tonic::async_trait]
impl Auth for AuthProvider {
    async fn credentials(
        &self,
        request: Request<CredentialsRequest>,
    ) -> Result<Response<CredentialsResponse>, Status> {
        // Unknown hosts get empty credentials: BuildKit then pulls anonymously, as the CLI would.
        let (username, secret) = self
            .0
            .get(&request.get_ref().host)
            .cloned()
            .unwrap_or_default();
        Ok(Response::new(CredentialsResponse { username, secret }))
    }

    async fn fetch_token(
        &self,
        _request: Request<FetchTokenRequest>,
    ) -> Result<Response<FetchTokenResponse>, Status> {
        Err(Status::unimplemented(
            "berth serves credentials, not tokens",
        ))
    }

    async fn get_token_authority(
        &self,
        _request: Request<GetTokenAuthorityRequest>,
    ) -> Result<Response<GetTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }

    async fn verify_token_authority(
        &self,
        _request: Request<VerifyTokenAuthorityRequest>,
    ) -> Result<Response<VerifyTokenAuthorityResponse>, Status> {
        Err(Status::unimplemented("no token authority"))
    }
}

/// Build secrets by id, read from their files only when a step mounts them.
struct SecretProvider(HashMap<String, PathBuf>);

#[tonic::async_trait]
impl Secrets for SecretProvider {
    async fn get_secret(
        &self,
        request: Request<GetSecretRequest>,
    ) -> Result<Response<GetSecretResponse>, Status> {
        let id = &request.get_ref().id;
        let Some(path) = self.0.get(id) else {
            return Err(Status::not_found(format!("no secret with id `{id}`")));
        };
        let meta = tokio::fs::metadata(path)
            .await
            .map_err(|e| Status::not_found(format!("secret `{id}`: {e}")))?;
        if meta.len() > MAX_SECRET {
            return Err(Status::invalid_argument(format!(
                "secret `{id}` is larger than {MAX_SECRET} bytes"
            )));
        }
        let data = tokio::fs::read(path)
            .await
            .map_err(|e| Status::not_found(format!("secret `{id}`: {e}")))?;
        Ok(Response::new(GetSecretResponse { data }))
    }
}
