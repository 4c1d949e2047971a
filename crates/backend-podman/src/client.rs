//! The libpod API on the service's unix socket, through the REST engines' shared HTTP/1.1 client
//! ([`berth_http::client`]): one connection per request, bodies that may be streams, answers read whole or as
//! JSON lines while they arrive. A remote service's socket is forwarded to a local one by one SSH session
//! ([`berth_http::ssh::SshSession`]), opened on the first request and kept for the engine's life: each request
//! is then a local connection riding on it, with no SSH handshake of its own.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use berth_core::lines::Piece;
pub(crate) use berth_http::client::{empty, streaming, Body};
use berth_http::ssh::SharedSession;
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::net::UnixStream;

use crate::endpoint::Address;

/// The API prefix: libpod 4.0 is the oldest API berth speaks (Debian 12 ships 4.3).
pub(crate) const API: &str = "/v4.0.0";

/// The service's socket.
#[derive(Debug, Clone)]
pub(crate) struct Client {
    pub(crate) address: Address,
    /// The SSH session of a remote address (opened on the first request).
    pub(crate) ssh: Option<Arc<SharedSession>>,
    /// How long logging in to a remote host may take ([`crate::PodmanOptions::ping_timeout`]).
    pub(crate) login_timeout: Duration,
    /// How long a streamed answer may go without a byte ([`crate::PodmanOptions::idle_timeout`]).
    pub(crate) idle_timeout: Duration,
}

/// The largest answer berth reads whole (inspect, info, error documents are kilobytes).
pub(crate) const MAX_ANSWER_BYTES: usize = 16 << 20;

/// Said in place of a line of the service's stream too long to keep.
pub(crate) const OVERLONG: &str = "(berth left out a line of output longer than 1 MiB)\n";

impl Client {
    /// Sends `method path` (path below [`API`], query included) with `headers` and `body`.
    pub(crate) async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: Body,
    ) -> io::Result<Response<Incoming>> {
        let stream = self.connect().await?;
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
        // the connection task ends with the answer's body; nothing needs to stop it sooner
        Ok(berth_http::client::send(stream, request).await?.response)
    }
}

impl Client {
    /// A fresh connection to the service: its socket, or the local end of the SSH session's forward.
    async fn connect(&self) -> io::Result<UnixStream> {
        match &self.address {
            Address::Unix(path) => UnixStream::connect(path).await,
            Address::Ssh { .. } => {
                let ssh = self
                    .ssh
                    .as_ref()
                    .ok_or_else(|| io::Error::other("a remote address without its SSH session"))?;
                let local = ssh
                    .get(self.login_timeout)
                    .await?
                    .forwarded_socket()
                    .ok_or_else(|| io::Error::other("the SSH session forwards no socket"))?;
                UnixStream::connect(local).await
            }
        }
    }
}

/// A response read whole, up to [`MAX_ANSWER_BYTES`].
pub(crate) async fn read_all(
    response: Response<Incoming>,
) -> io::Result<(StatusCode, bytes::Bytes)> {
    berth_http::client::read_all(response, MAX_ANSWER_BYTES).await
}

/// A streamed response body as JSON lines, failing when it goes [`Client::idle_timeout`] without a byte.
pub(crate) struct Lines(berth_http::client::Lines);

impl Lines {
    pub(crate) fn new(response: Response<Incoming>, idle_timeout: Duration) -> Self {
        Lines(berth_http::client::Lines::new(response, Some(idle_timeout)))
    }

    /// Changes the idle limit from the next read on (a build's pull, then its steps).
    pub(crate) fn set_idle(&mut self, idle_timeout: Duration) {
        self.0.set_idle_timeout(Some(idle_timeout));
    }

    /// The next non-empty line parsed as JSON, or `None` at the end of the body. A line too long to keep
    /// comes back as a `stream` message saying so.
    pub(crate) async fn next_json(&mut self) -> io::Result<Option<serde_json::Value>> {
        loop {
            match self.0.next().await? {
                Some(Piece::Line(line)) if line.iter().all(u8::is_ascii_whitespace) => continue,
                Some(Piece::Line(line)) => return parse_line(&line).map(Some),
                Some(Piece::Overlong) => {
                    return Ok(Some(serde_json::json!({ "stream": OVERLONG })))
                }
                None => return Ok(None),
            }
        }
    }
}

fn parse_line(line: &[u8]) -> io::Result<serde_json::Value> {
    serde_json::from_slice(line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

pub(crate) use berth_http::encode::query;

/// An image name as a path segment of `/libpod/images/{name}/...`.
pub(crate) fn image_path(name: &str) -> String {
    berth_http::encode::encode(name, ":@")
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

    mod misbehaving {
        use super::super::*;
        use berth_tests::fake_http::{Answer, FakeServer};

        fn client(dir: &std::path::Path, answer: fn() -> Answer) -> (Client, FakeServer) {
            let socket = dir.join("podman.sock");
            let server = FakeServer::unix(&socket, move |_| answer());
            let client = Client {
                address: Address::Unix(socket),
                ssh: None,
                login_timeout: Duration::from_secs(5),
                idle_timeout: Duration::from_millis(300),
            };
            (client, server)
        }

        /// Fails the test when `work` has not finished long after the client's bounds should have hit.
        async fn bounded<T>(work: impl std::future::Future<Output = T>) -> T {
            tokio::time::timeout(Duration::from_secs(60), work)
                .await
                .expect("hung: a read without a bound")
        }

        async fn get(client: &Client) -> Response<Incoming> {
            client
                .send(Method::GET, "/libpod/info", &[], empty())
                .await
                .expect("answer")
        }

        #[tokio::test]
        async fn an_endless_answer_is_cut_at_the_cap() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (client, _server) = client(dir.path(), || {
                Answer::Endless("HTTP/1.1 200 OK\r\n\r\n".to_string())
            });
            let err = bounded(read_all(bounded(get(&client)).await))
                .await
                .expect_err("endless");
            assert_eq!(err.kind(), io::ErrorKind::InvalidData, "{err}");
            assert!(err.to_string().contains("more than 16 MiB"), "{err}");
        }

        #[tokio::test]
        async fn a_stream_that_stalls_times_out() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (client, _server) = client(dir.path(), || {
                Answer::SendAndStall(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n11\r\n{\"stream\":\"a\\n\"}\n\r\n"
                        .to_vec(),
                )
            });
            let mut lines = Lines::new(bounded(get(&client)).await, client.idle_timeout);
            let first = bounded(lines.next_json()).await.expect("a line");
            assert_eq!(first, Some(serde_json::json!({"stream": "a\n"})));
            let err = bounded(lines.next_json()).await.expect_err("stalled");
            assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
        }

        #[tokio::test]
        async fn an_overlong_line_is_left_out_and_said() {
            let dir = tempfile::tempdir().expect("tempdir");
            let (client, _server) = client(dir.path(), || {
                let mut answer = b"HTTP/1.1 200 OK\r\n\r\n{\"stream\":\"".to_vec();
                answer.extend(std::iter::repeat_n(b'x', 3 << 20));
                answer.extend_from_slice(b"\"}\n{\"stream\":\"after\"}\n");
                Answer::SendAndClose(answer)
            });
            let mut lines = Lines::new(bounded(get(&client)).await, client.idle_timeout);
            let mut seen = Vec::new();
            while let Some(line) = bounded(lines.next_json()).await.expect("lines") {
                seen.push(line["stream"].as_str().unwrap_or_default().to_string());
            }
            assert_eq!(seen, vec![OVERLONG.to_string(), "after".to_string()]);
        }
    }
}
