//! A minimal HTTP/1.1 client for the libpod API on a unix socket: one connection per request (the service
//! answers long streams on each), request bodies that may be streams, and response bodies read whole or as
//! JSON lines while they arrive.

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use futures_util::Stream;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::net::UnixStream;

/// The API prefix: libpod 4.0 is the oldest API berth speaks (Debian 12 ships 4.3).
pub(crate) const API: &str = "/v4.0.0";

/// A request body.
pub(crate) type Body = UnsyncBoxBody<Bytes, io::Error>;

/// An empty body.
pub(crate) fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body that sends what `stream` yields, as it yields it.
pub(crate) fn streaming<S>(stream: S) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    use futures_util::StreamExt;
    BodyExt::boxed_unsync(StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))))
}

/// The service's socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) socket: PathBuf,
}

impl Client {
    /// Sends `method path` (path below [`API`], query included) with `headers` and `body`.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> io::Result<Response<Incoming>> {
        let stream = UnixStream::connect(&self.socket).await?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(hyper_io)?;
        tokio::spawn(connection);
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{API}{path}"))
            .header(http::header::HOST, "podman");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let request = request
            .body(body)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        sender.send_request(request).await.map_err(hyper_io)
    }
}

/// A hyper error as an I/O error, keeping an underlying I/O error's kind.
pub(crate) fn hyper_io(err: hyper::Error) -> io::Error {
    let kind = std::error::Error::source(&err)
        .and_then(|s| s.downcast_ref::<io::Error>())
        .map_or(io::ErrorKind::Other, io::Error::kind);
    io::Error::new(kind, err)
}

/// A response read whole.
pub(crate) async fn read_all(response: Response<Incoming>) -> io::Result<(StatusCode, Bytes)> {
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(hyper_io)?
        .to_bytes();
    Ok((status, body))
}

/// The `message` of a libpod error body (`{"cause", "message", "response"}`), or the body as text.
pub(crate) fn error_message(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            v.get("message")
                .and_then(|m| m.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// Splits a streamed response body into lines as they arrive.
pub(crate) struct Lines {
    body: Incoming,
    buf: Vec<u8>,
    done: bool,
}

impl Lines {
    pub(crate) fn new(response: Response<Incoming>) -> Self {
        Lines {
            body: response.into_body(),
            buf: Vec::new(),
            done: false,
        }
    }

    /// The next non-empty line parsed as JSON, or `None` at the end of the body.
    pub(crate) async fn next_json(&mut self) -> io::Result<Option<serde_json::Value>> {
        loop {
            if let Some(pos) = self.buf.iter().position(|b| *b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=pos).collect();
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                return parse_line(&line).map(Some);
            }
            if self.done {
                if self.buf.iter().all(u8::is_ascii_whitespace) {
                    return Ok(None);
                }
                let line = std::mem::take(&mut self.buf);
                return parse_line(&line).map(Some);
            }
            match self.body.frame().await {
                Some(frame) => {
                    if let Ok(data) = frame.map_err(hyper_io)?.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
                None => self.done = true,
            }
        }
    }
}

fn parse_line(line: &[u8]) -> io::Result<serde_json::Value> {
    serde_json::from_slice(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Percent-encodes `value` for a URL, leaving unreserved characters and those in `keep`.
pub(crate) fn encode(value: &str, keep: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        let c = byte as char;
        if c.is_ascii_alphanumeric() || "-._~".contains(c) || (c.is_ascii() && keep.contains(c)) {
            out.push(c);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

/// `name=value&...` with values encoded.
pub(crate) fn query(pairs: &[(&str, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={}", encode(v, "")))
        .collect::<Vec<_>>()
        .join("&")
}

/// An image name as a path segment of `/libpod/images/{name}/...`.
pub(crate) fn image_path(name: &str) -> String {
    encode(name, ":@")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_queries_and_names() {
        assert_eq!(
            query(&[
                ("t", "127.0.0.1:5000/a/b:1".into()),
                ("x", "[\"a b\"]".into())
            ]),
            "t=127.0.0.1%3A5000%2Fa%2Fb%3A1&x=%5B%22a%20b%22%5D"
        );
        assert_eq!(image_path("r:5000/a/b:1"), "r:5000%2Fa%2Fb:1");
    }

    #[test]
    fn error_bodies_give_their_message() {
        let body = br#"{"cause":"image not known","message":"x: image not known","response":404}"#;
        assert_eq!(error_message(body), "x: image not known");
        assert_eq!(error_message(b"plain\n"), "plain");
    }
}
