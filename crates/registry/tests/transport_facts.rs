//! Failures under the HTTP request that no retry fixes: a certificate nobody trusts and a host name that does not
//! resolve. Both were once temporary (retried four times, then "check that the registry is reachable"); they are
//! permanent and say what to do.

mod common;

use std::net::{TcpStream, UdpSocket};
use std::process::{Child, Command, Stdio};

use berth_core::ErrorKind;
use berth_registry::Existence;
use common::{client, image, Home};

/// `openssl s_server` with a self-signed certificate, killed when dropped.
struct TlsServer {
    child: Child,
    _dir: tempfile::TempDir,
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A TLS server on this machine's own (non-loopback) address, so the client verifies it as it would any
/// registry (loopback registries are reached without verification).
fn tls_server() -> (TlsServer, String) {
    // the address a packet to the outside would leave from; connecting a UDP socket sends nothing
    let probe = UdpSocket::bind("0.0.0.0:0").expect("bind");
    probe
        .connect("192.0.2.1:9")
        .expect("a route off this machine");
    let ip = probe.local_addr().expect("address").ip();
    assert!(!ip.is_loopback(), "{ip}");
    let port = std::net::TcpListener::bind("0.0.0.0:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let dir = tempfile::tempdir().expect("tempdir");
    let made = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=registry",
            "-keyout",
            "key.pem",
            "-out",
            "cert.pem",
        ])
        .current_dir(dir.path())
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{made:?}");
    let child = Command::new("openssl")
        .args([
            "s_server", "-quiet", "-www", "-cert", "cert.pem", "-key", "key.pem",
        ])
        .args(["-accept", &format!("0.0.0.0:{port}")])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    let server = TlsServer { child, _dir: dir };
    let address = format!("{ip}:{port}");
    for _ in 0..200 {
        if TcpStream::connect(&address).is_ok() {
            return (server, address);
        }
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    panic!("openssl s_server never listened on {address}");
}

#[tokio::test]
async fn an_untrusted_certificate_is_not_retried_and_names_the_ca_flag() {
    let (_server, address) = tls_server();
    let home = Home::new();
    let found = client(home.resolver(&[]))
        .exists(&image(&format!("{address}/team/app:1")))
        .await;
    let Existence::Unknown(err) = found else {
        panic!("an untrusted registry cannot answer: {found:?}");
    };
    assert!(!err.is_temporary(), "{err}");
    assert_ne!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(!err.message().contains("gave up after"), "retried: {err}");
    assert!(
        err.hint().unwrap_or_default().contains("--ca-file"),
        "{err}"
    );
}

#[tokio::test]
async fn an_unknown_host_is_not_retried_and_says_so() {
    let home = Home::new();
    let found = client(home.resolver(&[]))
        .exists(&image("no-such-registry.invalid/team/app:1"))
        .await;
    let Existence::Unknown(err) = found else {
        panic!("a registry that does not resolve cannot answer: {found:?}");
    };
    assert!(!err.is_temporary(), "{err}");
    assert!(!err.message().contains("gave up after"), "retried: {err}");
    assert!(
        err.hint().unwrap_or_default().contains("does not resolve"),
        "{err}"
    );
}
