//! HTTP/1.1 to a local engine over any byte stream: one request per connection (the engines answer long
//! streams on each), request bodies that may be streams, answers read whole under a cap or split into lines
//! as they arrive, and connections that may be upgraded (Docker's BuildKit session).
//!
//! Opening the stream is the backend's: a unix socket for Podman and LXD, Docker's `DOCKER_HOST` forms (unix,
//! TCP, TLS with `DOCKER_CERT_PATH`, ssh), and later HTTPS with a client certificate for a remote LXD. What
//! happens on the stream once open is here, once.

use std::io;
use std::time::Duration;

use berth_core::lines::{LineSplitter, Piece};
use bytes::Bytes;
use futures_util::Stream;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Limited, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::task::JoinHandle;

/// A request body.
pub type Body = UnsyncBoxBody<Bytes, io::Error>;

/// An empty body.
pub fn empty() -> Body {
    Empty::<Bytes>::new()
        .map_err(|never| match never {})
        .boxed_unsync()
}

/// A body that sends what `stream` yields, as it yields it.
pub fn streaming<S>(stream: S) -> Body
where
    S: Stream<Item = io::Result<Bytes>> + Send + 'static,
{
    use futures_util::StreamExt;
    BodyExt::boxed_unsync(StreamBody::new(stream.map(|chunk| chunk.map(Frame::data))))
}

/// An answer and the task driving its connection: the connection lives until the answer's body is read or the
/// task is aborted (a build that failed stops sending the rest of its context that way).
pub struct Exchange {
    /// The engine's answer; its body arrives as it is read.
    pub response: Response<Incoming>,
    /// The task that drives the connection (upgrades included).
    pub connection: JoinHandle<()>,
}

/// Sends `request` on a fresh HTTP/1.1 connection over `stream`.
pub async fn send<S, B>(stream: S, request: Request<B>) -> io::Result<Exchange>
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(hyper_io)?;
    let connection = tokio::spawn(async move {
        // how the connection ended reaches the caller through the answer's body, or not at all
        let _ = connection.with_upgrades().await;
    });
    match sender.send_request(request).await {
        Ok(response) => Ok(Exchange {
            response,
            connection,
        }),
        Err(e) => {
            connection.abort();
            Err(hyper_io(e))
        }
    }
}

/// A hyper error as an I/O error, keeping an underlying I/O error's kind and the hyper error as its source
/// (so [`crate::transport`] still finds a timeout or a TLS error in it).
pub fn hyper_io(err: hyper::Error) -> io::Error {
    let kind =
        crate::transport::find::<io::Error>(&err).map_or(io::ErrorKind::Other, io::Error::kind);
    io::Error::new(kind, err)
}

/// An answer read whole, up to `cap` bytes (more is an `InvalidData` error naming the cap).
pub async fn read_all(response: Response<Incoming>, cap: usize) -> io::Result<(StatusCode, Bytes)> {
    let status = response.status();
    let body = Limited::new(response.into_body(), cap)
        .collect()
        .await
        .map_err(|e| match e.downcast::<hyper::Error>() {
            Ok(e) => hyper_io(*e),
            Err(_) => io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the service answered with more than {} MiB", cap >> 20),
            ),
        })?
        .to_bytes();
    Ok((status, body))
}

/// An answer's body split into lines as it arrives, each at most [`berth_core::lines::MAX_LINE_BYTES`];
/// with an idle timeout, a body that goes that long without a byte fails with `TimedOut`.
pub struct Lines {
    body: Incoming,
    lines: LineSplitter,
    idle_timeout: Option<Duration>,
    done: bool,
}

impl Lines {
    /// Lines of `response`'s body.
    pub fn new(response: Response<Incoming>, idle_timeout: Option<Duration>) -> Self {
        Lines {
            body: response.into_body(),
            lines: LineSplitter::default(),
            idle_timeout,
            done: false,
        }
    }

    /// Changes the idle timeout from the next read on: a stream whose phases deserve different patience (a
    /// build's base pull, then its RUN steps).
    pub fn set_idle_timeout(&mut self, idle_timeout: Option<Duration>) {
        self.idle_timeout = idle_timeout;
    }

    /// The next line (or the note that an overlong one was left out), `None` at the end of the body.
    pub async fn next(&mut self) -> io::Result<Option<Piece>> {
        loop {
            let piece = if self.done {
                self.lines.finish()
            } else {
                self.lines.next_piece()
            };
            match piece {
                Some(piece) => return Ok(Some(piece)),
                None if self.done => return Ok(None),
                None => {}
            }
            let frame = match self.idle_timeout {
                Some(idle) => tokio::time::timeout(idle, self.body.frame())
                    .await
                    .map_err(|_| {
                        io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("the service sent nothing for {} s", idle.as_secs_f32()),
                        )
                    })?,
                None => self.body.frame().await,
            };
            match frame {
                Some(frame) => {
                    if let Ok(data) = frame.map_err(hyper_io)?.into_data() {
                        self.lines.push(&data);
                    }
                }
                None => self.done = true,
            }
        }
    }
}
