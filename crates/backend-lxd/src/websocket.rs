//! The few WebSocket frames LXD's exec API needs, on a connection made as every request's is (the unix socket
//! or HTTPS): berth connects to an operation's streams (the command's stdin, stdout and stderr, and its control
//! channel), reads the output as it comes, and closes stdin at once (a RUN step reads nothing). Server frames
//! are unmasked; the one frame berth sends (close) is masked, as a client's must be.

use std::io;

use base64::Engine as _;
use tokio::io::{AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _, BufReader};

use crate::client::{Client, Connection};

/// The largest frame berth accepts (LXD sends output in pieces of at most a few KiB).
const MAX_FRAME: u64 = 16 << 20;

/// One WebSocket connection.
pub(crate) struct WebSocket {
    stream: BufReader<Box<dyn Connection>>,
}

/// Opens the WebSocket at `path` (with its `secret` query) on LXD's server.
pub(crate) async fn connect(client: &Client, path: &str) -> io::Result<WebSocket> {
    let mut stream = client.connect().await?;
    let key = base64::engine::general_purpose::STANDARD
        .encode(std::array::from_fn::<u8, 16, _>(|_| fastrand::u8(..)));
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: lxd\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut stream = BufReader::new(stream);
    let mut status = String::new();
    stream.read_line(&mut status).await?;
    if !status.starts_with("HTTP/1.1 101") {
        return Err(io::Error::new(
            io::ErrorKind::ConnectionRefused,
            format!(
                "LXD refused the stream {}: {}",
                path.split('?').next().unwrap_or(path),
                status.trim()
            ),
        ));
    }
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 || line == "\r\n" {
            break;
        }
    }
    Ok(WebSocket { stream })
}

impl WebSocket {
    /// The next data message; `None` when the server closes the stream.
    pub(crate) async fn next(&mut self) -> io::Result<Option<Vec<u8>>> {
        loop {
            let mut head = [0u8; 2];
            match self.stream.read_exact(&mut head).await {
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
                Err(e) => return Err(e),
            }
            let opcode = head[0] & 0x0f;
            let mut length = u64::from(head[1] & 0x7f);
            if length == 126 {
                length = u64::from(self.stream.read_u16().await?);
            } else if length == 127 {
                length = self.stream.read_u64().await?;
            }
            if length > MAX_FRAME {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "a WebSocket frame over 16 MiB",
                ));
            }
            let mask = if head[1] & 0x80 != 0 {
                let mut key = [0u8; 4];
                self.stream.read_exact(&mut key).await?;
                Some(key)
            } else {
                None
            };
            let mut payload = vec![0u8; length as usize];
            self.stream.read_exact(&mut payload).await?;
            if let Some(key) = mask {
                for (i, b) in payload.iter_mut().enumerate() {
                    *b ^= key[i % 4];
                }
            }
            match opcode {
                0..=2 => return Ok(Some(payload)),
                8 => return Ok(None),
                _ => {} // ping and pong: LXD's streams need no answer
            }
        }
    }

    /// Sends a close frame (empty, masked with a zero key): for stdin, the end of the input.
    pub(crate) async fn close(&mut self) -> io::Result<()> {
        self.stream
            .get_mut()
            .write_all(&[0x88, 0x80, 0, 0, 0, 0])
            .await
    }
}
