//! The HTTP/1.1 exchange with the LXD daemon on its unix socket: one connection per request, bodies sent whole
//! or streamed from a file, answers read whole. This is the only module that names hyper: the shared client
//! crate the Docker and Podman backends are moving to replaces it in a few lines (`send` and `read_all`).

use std::io;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Method, Request, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt as _;
use tokio::net::UnixStream;

/// The largest answer read whole (instance and image documents are kilobytes; exec logs are capped by this).
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

/// The daemon's socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) socket: PathBuf,
}

/// An answer: status and whole body.
pub(crate) struct Answer {
    pub(crate) status: StatusCode,
    pub(crate) body: Bytes,
}

impl Client {
    /// Sends `method path` with `headers` and `body` and reads the answer whole.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> io::Result<Answer> {
        let stream = UnixStream::connect(&self.socket).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(hyper_io)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, "lxd");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let body: UnsyncBoxBody<Bytes, io::Error> = match body {
            Body::Empty => Full::new(Bytes::new())
                .map_err(|never| match never {})
                .boxed_unsync(),
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
        let response = sender.send_request(request).await.map_err(hyper_io)?;
        let status = response.status();
        let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| match e.downcast::<hyper::Error>() {
                Ok(e) => hyper_io(*e),
                Err(_) => io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("LXD answered with more than {} MiB", MAX_ANSWER_BYTES >> 20),
                ),
            })?
            .to_bytes();
        Ok(Answer { status, body })
    }
}

/// A body that streams `path` in 1 MiB pieces.
async fn file_body(path: &Path) -> io::Result<UnsyncBoxBody<Bytes, io::Error>> {
    let file = tokio::fs::File::open(path).await?;
    let chunks = futures_util::stream::unfold(file, |mut file| async move {
        let mut buffer = vec![0u8; 1 << 20];
        match file.read(&mut buffer).await {
            Ok(0) => None,
            Ok(n) => {
                buffer.truncate(n);
                Some((Ok(Frame::data(Bytes::from(buffer))), file))
            }
            Err(e) => Some((Err(e), file)),
        }
    });
    Ok(BodyExt::boxed_unsync(StreamBody::new(chunks.boxed())))
}

/// A hyper error as an I/O error, keeping an underlying I/O error's kind.
fn hyper_io(err: hyper::Error) -> io::Error {
    let kind = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .map_or(io::ErrorKind::Other, io::Error::kind);
    io::Error::new(kind, err)
}
