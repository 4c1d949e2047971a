//! The proxy itself: accepts HTTP/1.1 on 127.0.0.1, reads each request whole, forwards it to the registry on a
//! fresh connection and relays the answer, except for the requests its [`FaultPlan`] picks, which get the fault.
//!
//! Every exchange is one request per connection (`Connection: close` both ways): the proxy never has to find
//! where one answer ends and the next begins, and a fault on one connection cannot leak into another request.
//! The registry builds upload `Location`s from the `Host` header, which is passed through unchanged, so those
//! point at the proxy too.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::{Class, Fault, FaultPlan};

/// The longest a stalled connection is held when the client never gives up (berth with no timeout): long
/// enough that the test's hang bound sees it as a hang, short enough that no task outlives a test run by much.
const STALL_LIMIT: Duration = Duration::from_secs(600);

/// A running fault-injecting proxy; stops when dropped.
pub struct FaultProxy {
    addr: SocketAddr,
    injected: Arc<AtomicU32>,
    seen: Arc<AtomicU32>,
    task: JoinHandle<()>,
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl FaultProxy {
    /// Starts a proxy on an ephemeral loopback port in front of `upstream` (`host:port`, plain HTTP).
    pub async fn start(upstream: &str, plan: FaultPlan) -> std::io::Result<FaultProxy> {
        FaultProxy::start_after(upstream, plan, 0).await
    }

    /// [`FaultProxy::start`] whose fault spares the first `skip` requests of the plan's class: with 1, a pull's
    /// first blob `GET` (the image config, which every client fetches first) passes and its layer is hit.
    pub async fn start_after(
        upstream: &str,
        plan: FaultPlan,
        skip: u32,
    ) -> std::io::Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let injected = Arc::new(AtomicU32::new(0));
        let seen = Arc::new(AtomicU32::new(0));
        let shared = Arc::new(Shared {
            upstream: upstream.to_string(),
            plan,
            skip,
            seen: seen.clone(),
            injected: injected.clone(),
        });
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let shared = shared.clone();
                tokio::spawn(async move {
                    // a client that hangs up mid-request is not the proxy's concern
                    let _ = serve(client, &shared).await;
                });
            }
        });
        Ok(FaultProxy {
            addr,
            injected,
            seen,
            task,
        })
    }

    /// `127.0.0.1:<port>`: the registry host to give berth.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// How many faults were injected so far.
    pub fn injected(&self) -> u32 {
        self.injected.load(Ordering::SeqCst)
    }

    /// How many requests of the plan's class came so far (with `times: 0`, a counter that harms nothing).
    pub fn seen(&self) -> u32 {
        self.seen.load(Ordering::SeqCst)
    }
}

struct Shared {
    upstream: String,
    plan: FaultPlan,
    /// Requests of the plan's class let through before the fault starts.
    skip: u32,
    /// Requests of the plan's class seen so far.
    seen: Arc<AtomicU32>,
    injected: Arc<AtomicU32>,
}

/// One request as read from the client: its head (request line and headers, without the blank line) and body.
struct Request {
    method: String,
    path: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Request {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.trim())
    }

    /// The head as sent upstream: the body re-framed by length, one request per connection.
    fn upstream_head(&self) -> String {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        for (name, value) in &self.headers {
            let skip = ["connection", "content-length", "transfer-encoding"];
            if !skip.iter().any(|s| name.eq_ignore_ascii_case(s)) {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
        }
        if !self.body.is_empty() || self.method == "PUT" || self.method == "PATCH" {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        head.push_str("Connection: close\r\n\r\n");
        head
    }
}

async fn serve(client: TcpStream, shared: &Shared) -> std::io::Result<()> {
    let mut client = BufReader::new(client);
    let Some((method, path, headers)) = read_head(&mut client).await? else {
        return Ok(());
    };
    let class = Class::of(&method, &path);
    let fault = if class == shared.plan.class {
        let n = shared.seen.fetch_add(1, Ordering::SeqCst);
        (n >= shared.skip && n - shared.skip < shared.plan.times).then_some(shared.plan.fault)
    } else {
        None
    };
    let mut request = Request {
        method,
        path,
        headers,
        body: Vec::new(),
    };
    let length = body_length(&request);
    if fault == Some(Fault::Reset) {
        // half the body (none if it has none), then a reset: the client sees its upload cut off
        read_body(&mut client, &mut request, length.map(|l| l / 2)).await?;
        shared.injected.fetch_add(1, Ordering::SeqCst);
        return reset(client.into_inner());
    }
    read_body(&mut client, &mut request, length).await?;
    let mut client = client.into_inner();
    match fault {
        Some(Fault::ServerError) => {
            shared.injected.fetch_add(1, Ordering::SeqCst);
            let body =
                r#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the fault proxy"}]}"#;
            return answer(&mut client, "503 Service Unavailable", &[], body).await;
        }
        Some(Fault::TooManyRequests) => {
            shared.injected.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by the fault proxy"}]}"#;
            return answer(
                &mut client,
                "429 Too Many Requests",
                &["Retry-After: 1"],
                body,
            )
            .await;
        }
        Some(Fault::Expired) => {
            shared.injected.fetch_add(1, Ordering::SeqCst);
            let body = r#"{"errors":[{"code":"UNAUTHORIZED","message":"token expired (injected by the fault proxy)"}]}"#;
            let challenge = r#"WWW-Authenticate: Basic realm="berth fault proxy""#;
            return answer(&mut client, "401 Unauthorized", &[challenge], body).await;
        }
        Some(Fault::Stall) if !request.body.is_empty() || request.method == "HEAD" => {
            // nothing reaches the registry and no byte comes back
            shared.injected.fetch_add(1, Ordering::SeqCst);
            return stall(client).await;
        }
        _ => {}
    }
    let response = forward(&shared.upstream, &request).await?;
    let head_end = find(&response, b"\r\n\r\n").map_or(response.len(), |i| i + 4);
    let (head, body) = response.split_at(head_end);
    match fault {
        Some(Fault::Stall) => {
            // the head and half the body, then silence: a download that stops moving
            shared.injected.fetch_add(1, Ordering::SeqCst);
            client.write_all(head).await?;
            client.write_all(&body[..body.len() / 2]).await?;
            client.flush().await?;
            stall(client).await
        }
        Some(Fault::Truncated) if body.len() >= 2 => {
            shared.injected.fetch_add(1, Ordering::SeqCst);
            client.write_all(head).await?;
            client.write_all(&body[..body.len() / 2]).await?;
            client.shutdown().await
        }
        Some(Fault::WrongLength) if body.len() >= 2 => {
            // announces half the length and sends it all: a client trusting the header gets half the bytes
            shared.injected.fetch_add(1, Ordering::SeqCst);
            let head = set_content_length(head, body.len() / 2);
            client.write_all(&head).await?;
            client.write_all(body).await?;
            client.shutdown().await
        }
        _ => {
            client.write_all(&response).await?;
            client.shutdown().await
        }
    }
}

/// Reads the request line and headers; `None` when the client closed before sending one.
async fn read_head(
    client: &mut BufReader<TcpStream>,
) -> std::io::Result<Option<(String, String, Vec<(String, String)>)>> {
    let mut line = String::new();
    if client.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = Vec::new();
    loop {
        line.clear();
        if client.read_line(&mut line).await? == 0 {
            return Ok(None);
        }
        let trimmed = line.trim_end();
        if trimmed.is_empty() {
            break;
        }
        if let Some((name, value)) = trimmed.split_once(':') {
            headers.push((name.trim().to_string(), value.trim().to_string()));
        }
    }
    Ok(Some((method, path, headers)))
}

/// The body's length when framed by `Content-Length`; `None` for chunked bodies, `Some(0)` for none.
fn body_length(request: &Request) -> Option<usize> {
    let chunked = request
        .header("transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
    if chunked {
        return None;
    }
    Some(
        request
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0),
    )
}

/// Reads `limit` bytes of a length-framed body, or a whole chunked body (`None`).
async fn read_body(
    client: &mut BufReader<TcpStream>,
    request: &mut Request,
    limit: Option<usize>,
) -> std::io::Result<()> {
    if let Some(n) = limit {
        request.body.resize(n, 0);
        return client.read_exact(&mut request.body).await.map(drop);
    }
    let mut line = String::new();
    loop {
        line.clear();
        client.read_line(&mut line).await?;
        let size = usize::from_str_radix(line.trim().split(';').next().unwrap_or("0"), 16)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        if size == 0 {
            // trailers, up to the blank line
            loop {
                line.clear();
                if client.read_line(&mut line).await? == 0 || line.trim().is_empty() {
                    return Ok(());
                }
            }
        }
        let start = request.body.len();
        request.body.resize(start + size + 2, 0);
        client.read_exact(&mut request.body[start..]).await?;
        request.body.truncate(start + size);
    }
}

/// Sends `request` to the registry on a new connection and reads the whole answer.
async fn forward(upstream: &str, request: &Request) -> std::io::Result<Vec<u8>> {
    let mut server = TcpStream::connect(upstream).await?;
    server.write_all(request.upstream_head().as_bytes()).await?;
    server.write_all(&request.body).await?;
    let mut response = Vec::new();
    server.read_to_end(&mut response).await?;
    Ok(response)
}

async fn answer(
    client: &mut TcpStream,
    status: &str,
    extra: &[&str],
    body: &str,
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for header in extra {
        head.push_str(header);
        head.push_str("\r\n");
    }
    head.push_str("\r\n");
    client.write_all(head.as_bytes()).await?;
    client.write_all(body.as_bytes()).await?;
    client.shutdown().await
}

/// Closes with a TCP reset rather than an orderly close.
fn reset(client: TcpStream) -> std::io::Result<()> {
    client.set_zero_linger()?;
    drop(client);
    Ok(())
}

/// Holds the connection without sending anything until the client gives up (or [`STALL_LIMIT`]).
async fn stall(mut client: TcpStream) -> std::io::Result<()> {
    let mut sink = [0u8; 1024];
    let wait = async { while matches!(client.read(&mut sink).await, Ok(n) if n > 0) {} };
    let _ = tokio::time::timeout(STALL_LIMIT, wait).await;
    Ok(())
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// `head` with its `Content-Length` replaced by `length`.
fn set_content_length(head: &[u8], length: usize) -> Vec<u8> {
    let text = String::from_utf8_lossy(head);
    let mut out = String::new();
    for line in text.split_inclusive("\r\n") {
        if line.to_ascii_lowercase().starts_with("content-length:") {
            out.push_str(&format!("Content-Length: {length}\r\n"));
        } else {
            out.push_str(line);
        }
    }
    out.into_bytes()
}
