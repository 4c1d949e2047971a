//! The HTTP/1.1 exchange with the LXD daemon, through berth's shared client ([`berth_http::client`]): one
//! connection per request (to the local unix socket, or over HTTPS to a remote server with lxc's client
//! certificate), bodies sent whole or streamed from a file, answers read whole.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_http::client::{empty, read_all, send, streaming};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite};
use tokio::net::UnixStream;

use crate::remote::Remote;

/// The largest answer read whole (instance and image documents are kilobytes).
const MAX_ANSWER_BYTES: usize = 64 << 20;

/// What a request sends.
pub(crate) enum Body {
    /// Nothing.
    Empty,
    /// These bytes.
    Bytes(Bytes),
    /// The contents of a file, streamed.
    File(PathBuf),
}

/// Where the daemon is.
#[derive(Debug, Clone)]
pub(crate) enum Client {
    /// The local server's unix socket.
    Unix(PathBuf),
    /// A remote server, over HTTPS with lxc's client certificate and its pinned server certificate.
    Remote(Arc<RemoteServer>),
}

/// A remote server and the TLS configuration lxc's files give for it.
pub(crate) struct RemoteServer {
    pub(crate) remote: Remote,
    tls: Arc<berth_http::tls::ClientConfig>,
}

impl std::fmt::Debug for RemoteServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteServer({:?})", self.remote)
    }
}

/// An answer: status and whole body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    /// Its headers (an `ETag`, the file API's `X-LXD-type`).
    pub(crate) headers: http::HeaderMap,
    pub(crate) body: Bytes,
}

/// A connection to the daemon, whichever way it was made.
pub(crate) trait Connection: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Connection for T {}

impl Client {
    /// A client for `remote`, reading lxc's certificates now (a missing or unreadable file is an I/O error
    /// naming it).
    pub(crate) fn remote(remote: Remote) -> io::Result<Client> {
        let tls = berth_http::tls::pinned_client_config(
            &remote.server_cert(),
            &remote.client_cert(),
            &remote.client_key(),
        )?;
        Ok(Client::Remote(Arc::new(RemoteServer {
            remote,
            tls: Arc::new(tls),
        })))
    }

    /// The server as messages name it: `unix:///var/lib/lxd/unix.socket`, `https://10.0.0.2:8443 (remote
    /// build)`.
    pub(crate) fn name(&self) -> String {
        match self {
            Client::Unix(socket) => format!("unix://{}", socket.display()),
            Client::Remote(server) => {
                format!(
                    "{} (lxc remote {})",
                    server.remote.url(),
                    server.remote.name
                )
            }
        }
    }

    /// The remote, when this is one.
    pub(crate) fn remote_server(&self) -> Option<&Remote> {
        match self {
            Client::Unix(_) => None,
            Client::Remote(server) => Some(&server.remote),
        }
    }

    /// A new connection to the daemon.
    pub(crate) async fn connect(&self) -> io::Result<Box<dyn Connection>> {
        Ok(match self {
            Client::Unix(socket) => Box::new(UnixStream::connect(socket).await?),
            Client::Remote(server) => Box::new(
                berth_http::tls::connect_with(&server.remote.addr, server.tls.clone()).await?,
            ),
        })
    }

    /// Sends `method path` with `headers` and `body` and reads the answer whole.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> io::Result<Answer> {
        self.exchange(method, path, headers, body, None).await
    }

    /// GETs `path`; a successful answer's body is written to file `out` as it arrives (an export is the size
    /// of a root folder), any other is read whole.
    pub(crate) async fn download(&self, path: &str, out: &Path) -> io::Result<Answer> {
        self.exchange(Method::GET, path, &[], Body::Empty, Some(out))
            .await
    }

    async fn exchange(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
        out: Option<&Path>,
    ) -> io::Result<Answer> {
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "lxd");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body = match body {
            Body::Empty => empty(),
            Body::Bytes(bytes) => Full::new(bytes)
                .map_err(|never| match never {})
                .boxed_unsync(),
            Body::File(path) => {
                let length = tokio::fs::metadata(&path).await?.len();
                request = request.header(http::header::CONTENT_LENGTH, length);
                file_body(&path).await?
            }
        };
        let request = request
            .body(body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let stream = self.connect().await?;
        let exchange = send(stream, request).await?;
        let headers = exchange.response.headers().clone();
        if let Some(out) = out.filter(|_| exchange.response.status().is_success()) {
            let status = exchange.response.status();
            let mut body = exchange.response.into_body();
            let mut file = tokio::io::BufWriter::new(tokio::fs::File::create(out).await?);
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map_err(berth_http::client::hyper_io)?.into_data() {
                    tokio::io::AsyncWriteExt::write_all(&mut file, &data).await?;
                }
            }
            tokio::io::AsyncWriteExt::flush(&mut file).await?;
            return Ok(Answer {
                status,
                headers,
                body: Bytes::new(),
            });
        }
        let (status, body) = read_all(exchange.response, MAX_ANSWER_BYTES).await?;
        Ok(Answer {
            status,
            headers,
            body,
        })
    }
}

/// A body that streams `path` in 1 MiB pieces.
async fn file_body(path: &Path) -> io::Result<berth_http::client::Body> {
    let file = tokio::fs::File::open(path).await?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Bytes::from(buffer)), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok(streaming(chunks.boxed()))
}
