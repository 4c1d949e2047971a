//! A tiny HTTP/1.1 server that misbehaves on purpose: it stalls, sends endless bodies, cuts answers short or
//! redirects to signed URLs, so clients can be tested for bounded reads and for what they print. It answers
//! what a handler decides from each request, over TCP or a Unix socket. It is a fake for the client's
//! protocol handling only, never evidence that a backend works against a real daemon.

use std::io::{BufReader, Read, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixListener;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// One request as the server read it.
#[derive(Debug, Clone)]
pub struct Request {
    /// `GET`, `PUT`, ...
    pub method: String,
    /// The request target: path and query.
    pub target: String,
    /// Header names (lowercased) and values.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes; chunked bodies are not read).
    pub body: Vec<u8>,
}

impl Request {
    /// The first value of header `name` (lowercase).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// How the server answers one request.
pub enum Answer {
    /// Send these bytes (a whole response: status line, headers, body) and read the next request.
    Send(Vec<u8>),
    /// Send these bytes, then neither send nor close until the client goes away: a stalled server.
    SendAndStall(Vec<u8>),
    /// Send these bytes, then close the connection: an answer cut short.
    SendAndClose(Vec<u8>),
    /// Send this head (status line and headers, ending in a blank line), then body bytes for ever.
    Endless(String),
}

impl Answer {
    /// A response with `status` (`"200 OK"`), extra header lines (`"Name: value\r\n"` each) and `body`.
    pub fn reply(status: &str, headers: &str, body: &[u8]) -> Answer {
        let mut bytes = format!(
            "HTTP/1.1 {status}\r\n{headers}Content-Length: {}\r\n\r\n",
            body.len()
        )
        .into_bytes();
        bytes.extend_from_slice(body);
        Answer::Send(bytes)
    }

    /// No answer at all, ever.
    pub fn stall() -> Answer {
        Answer::SendAndStall(Vec::new())
    }
}

type Handler = dyn Fn(&Request) -> Answer + Send + Sync;

/// A running server; it lives until the test process ends.
pub struct FakeServer {
    /// `127.0.0.1:port` for a TCP server, the socket path for a Unix one.
    pub addr: String,
    seen: Arc<Mutex<Vec<Request>>>,
}

impl FakeServer {
    /// Serves `handler` on a fresh loopback TCP port.
    pub fn tcp(handler: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> FakeServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let incoming = std::iter::from_fn(move || Some(listener.accept()))
            .flatten()
            .filter_map(|(s, _)| Some((s.try_clone().ok()?, s)));
        FakeServer::serve(addr, incoming, Arc::new(handler))
    }

    /// Serves `handler` on a Unix socket at `path`.
    pub fn unix(
        path: &Path,
        handler: impl Fn(&Request) -> Answer + Send + Sync + 'static,
    ) -> FakeServer {
        let listener = UnixListener::bind(path).expect("bind unix socket");
        let incoming = std::iter::from_fn(move || Some(listener.accept()))
            .flatten()
            .filter_map(|(s, _)| Some((s.try_clone().ok()?, s)));
        FakeServer::serve(path.display().to_string(), incoming, Arc::new(handler))
    }

    /// Answers each connection of `incoming` (a reading and a writing handle each) on a thread of its own.
    fn serve<S: Read + Write + Send + 'static>(
        addr: String,
        incoming: impl Iterator<Item = (S, S)> + Send + 'static,
        handler: Arc<Handler>,
    ) -> FakeServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            for (reader, writer) in incoming {
                spawn_connection(reader, writer, record.clone(), handler.clone());
            }
        });
        FakeServer { addr, seen }
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

fn spawn_connection<S: Read + Write + Send + 'static>(
    reader: S,
    writer: S,
    seen: Arc<Mutex<Vec<Request>>>,
    handler: Arc<Handler>,
) {
    std::thread::spawn(move || {
        let mut reader = BufReader::new(reader);
        let mut writer = writer;
        while let Some(request) = read_request(&mut reader) {
            let answer = handler(&request);
            seen.lock().unwrap_or_else(|p| p.into_inner()).push(request);
            match answer {
                Answer::Send(bytes) => {
                    if writer.write_all(&bytes).is_err() {
                        return;
                    }
                }
                Answer::SendAndStall(bytes) => {
                    let _ = writer.write_all(&bytes);
                    let _ = writer.flush();
                    // Hold the connection open, reading (and dropping) whatever comes, until the client closes.
                    let mut sink = [0u8; 8192];
                    while reader.read(&mut sink).is_ok_and(|n| n > 0) {}
                    return;
                }
                Answer::SendAndClose(bytes) => {
                    let _ = writer.write_all(&bytes);
                    return;
                }
                Answer::Endless(head) => {
                    if writer.write_all(head.as_bytes()).is_err() {
                        return;
                    }
                    let chunk = vec![b'x'; 64 * 1024];
                    while writer.write_all(&chunk).is_ok() {}
                    return;
                }
            }
        }
    });
}

fn read_request(reader: &mut impl std::io::BufRead) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let target = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(Request {
        method,
        target,
        headers,
        body,
    })
}
