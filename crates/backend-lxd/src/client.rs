//! The HTTP/1.1 exchange with the LXD daemon on its unix socket, through berth's shared client
//! ([`berth_http::client`]): one connection per request, bodies sent whole or streamed from a file, answers read
//! whole.

use std::io;
use std::path::{Path, PathBuf};

use berth_http::client::{empty, read_all, send, streaming};
use bytes::Bytes;
use futures_util::StreamExt as _;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use tokio::io::AsyncReadExt as _;
use tokio::net::UnixStream;

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
        let stream = UnixStream::connect(&self.socket).await?;
        let exchange = send(stream, request).await?;
        let (status, body) = read_all(exchange.response, MAX_ANSWER_BYTES).await?;
        Ok(Answer { status, body })
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
