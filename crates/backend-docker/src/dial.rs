//! Raw connections to the daemon for the two requests bollard cannot make for us: the BuildKit session
//! (`POST /session`, upgraded to HTTP/2 with berth serving gRPC) and the BuildKit `POST /build` that refers to it.
//!
//! bollard keeps its transports private, so this module reaches the same [`Endpoint`]s itself: unix sockets,
//! plain TCP, TCP with the client certificates of `DOCKER_CERT_PATH` ([`berth_http::tls`]), and ssh through
//! `ssh HOST docker system dial-stdio`, the way the docker CLI does, multiplexed on the engine's one SSH session
//! ([`berth_http::ssh`]; bollard's own requests use the same, see `connect.rs`). What is said on the stream is
//! [`berth_http::client`]'s.

use std::io;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpStream, UnixStream};

use crate::endpoint::Endpoint;

/// A byte stream to the daemon.
pub(crate) trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

/// The `Host` header sent on raw requests (dockerd ignores it; HTTP/1.1 requires one).
pub(crate) const HOST_HEADER: &str = "docker";

/// Opens a connection to the daemon at `endpoint`, TLS handshake included, within `timeout`: a daemon address
/// that accepts and never answers (a firewall, a wrong port, a stalled TLS peer) must not hang a build.
pub(crate) async fn dial(endpoint: &Endpoint, timeout: Duration) -> io::Result<Box<dyn Stream>> {
    match tokio::time::timeout(timeout, connect(endpoint, timeout)).await {
        Ok(stream) => stream,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "no connection to the daemon within {} s",
                timeout.as_secs_f32()
            ),
        )),
    }
}

async fn connect(endpoint: &Endpoint, timeout: Duration) -> io::Result<Box<dyn Stream>> {
    match endpoint {
        Endpoint::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
        Endpoint::Tcp { addr, tls: None } => {
            let stream = TcpStream::connect(addr).await?;
            stream.set_nodelay(true)?;
            Ok(Box::new(stream))
        }
        Endpoint::Tcp {
            addr,
            tls: Some(files),
        } => Ok(Box::new(
            berth_http::tls::connect(addr, &files.ca, &files.cert, &files.key).await?,
        )),
        Endpoint::Ssh(session) => Ok(Box::new(session.get(timeout).await?.stdio(DIAL_STDIO)?)),
    }
}

/// The command the docker CLI runs on the remote host to reach its daemon (whatever socket its own
/// configuration names there).
pub(crate) const DIAL_STDIO: &[&str] = &["docker", "system", "dial-stdio"];

#[cfg(test)]
mod tests {
    use super::*;
    use crate::endpoint::TlsFiles;
    use std::process::Command as StdCommand;

    /// A CA, and a client certificate and key it signed, made with openssl in `dir`.
    fn tls_files(dir: &std::path::Path) -> TlsFiles {
        let openssl = |args: &[&str]| {
            let status = StdCommand::new("openssl")
                .args(args)
                .current_dir(dir)
                .output()
                .expect("run openssl");
            assert!(status.status.success(), "openssl {args:?}: {status:?}");
        };
        std::fs::write(dir.join("ext.cnf"), "basicConstraints=CA:FALSE\n").expect("write ext.cnf");
        let key = ["-newkey", "rsa:2048", "-nodes", "-days", "1"];
        openssl(
            &[
                &["req", "-x509"][..],
                &key,
                &["-keyout", "ca-key.pem", "-out", "ca.pem", "-subj", "/CN=ca"],
            ]
            .concat(),
        );
        openssl(
            &[
                &["req"][..],
                &key[..3],
                &[
                    "-keyout",
                    "key.pem",
                    "-out",
                    "cert.csr",
                    "-subj",
                    "/CN=client",
                ],
            ]
            .concat(),
        );
        openssl(&[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            "1",
            // without extensions openssl signs a version 1 certificate, which rustls refuses
            "-extfile",
            "ext.cnf",
        ]);
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        }
    }

    #[tokio::test]
    async fn a_daemon_that_accepts_and_never_answers_times_out() {
        let dir = tempfile::tempdir().expect("tempdir");
        let tls = tls_files(dir.path());
        // accepts every connection and holds it, silent: the TLS handshake never completes
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        std::thread::spawn(move || {
            let held: Vec<_> = listener.incoming().collect();
            drop(held);
        });
        let endpoint = Endpoint::Tcp {
            addr,
            tls: Some(tls),
        };
        // the outer guard turns a regression into a failure rather than a test that never ends
        let dialled = tokio::time::timeout(
            Duration::from_secs(60),
            dial(&endpoint, Duration::from_millis(300)),
        )
        .await
        .expect("hung: the dialer has no timeout");
        let err = dialled.err().expect("no connection");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "{err}");
    }
}
