//! Why a daemon over TCP did not answer, told precisely: bollard reports "client error (Connect)" for a
//! refused port, a wrong CA and a refused client certificate alike. When the first exchange with a `tcp://`
//! daemon fails, berth dials it once more itself and names what it finds: a client file missing, nothing
//! listening, no answer at all, a daemon certificate from another CA or for another name, or the daemon
//! refusing the client certificate, each with its fix. `berth doctor` shows the same error.

use std::io;
use std::path::Path;
use std::time::Duration;

use berth_core::{Error, ErrorKind, Operation};
use berth_http::tls::Refusal;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::endpoint::{Endpoint, TlsFiles};
use crate::ENGINE;

/// Settings that name the client files, for hints.
const CERT_SETTINGS: &str =
    "DOCKER_CERT_PATH or engine.docker.cert_path (for a context: `docker context update`)";

/// A precise error for `error`, the failed first exchange with the daemon at `endpoint` (named `name` in
/// messages), or `error` itself when dialling again finds nothing more to say (or it is not a TCP daemon).
pub(crate) async fn explain(
    endpoint: &Endpoint,
    name: &str,
    timeout: Duration,
    error: Error,
) -> Error {
    let Endpoint::Tcp { addr, tls } = endpoint else {
        return error;
    };
    let found = match tokio::time::timeout(timeout, probe(addr, tls.as_ref())).await {
        Ok(found) => found,
        Err(_) => Some(Found::Silent),
    };
    match found {
        Some(found) => found.error(name, addr, tls.as_ref()),
        None => error,
    }
}

/// What dialling the daemon found.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Found {
    Missing(Vec<&'static str>),
    Refused,
    Silent,
    Tls(Refusal),
}

/// Dials `addr` (TLS with `tls`) and asks `/_ping`; `None` when that works or fails for another reason.
async fn probe(addr: &str, tls: Option<&TlsFiles>) -> Option<Found> {
    let Some(files) = tls else {
        return TcpStream::connect(addr)
            .await
            .err()
            .and_then(|e| transport(&e));
    };
    if let Some(missing) = missing_files(files) {
        return Some(missing);
    }
    let mut stream = match berth_http::tls::connect(addr, &files.ca, &files.cert, &files.key).await
    {
        Ok(stream) => stream,
        Err(e) => {
            return berth_http::tls::refusal(&e)
                .map(Found::Tls)
                .or_else(|| transport(&e))
        }
    };
    // TLS 1.3 finishes the client's side of the handshake before the server judges its certificate: the
    // refusal arrives as an alert on the first read
    let request = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n";
    let exchanged = async {
        stream.write_all(request).await?;
        let mut first = [0_u8; 16];
        stream.read(&mut first).await
    };
    match exchanged.await {
        Ok(_) => None,
        Err(e) => berth_http::tls::refusal(&e).map(Found::Tls),
    }
}

fn missing_files(files: &TlsFiles) -> Option<Found> {
    let missing: Vec<&'static str> = [
        ("ca.pem", &files.ca),
        ("cert.pem", &files.cert),
        ("key.pem", &files.key),
    ]
    .into_iter()
    .filter(|(_, path)| !path.is_file())
    .map(|(file, _)| file)
    .collect();
    (!missing.is_empty()).then_some(Found::Missing(missing))
}

/// The error for a TLS endpoint whose client files are not all there (bollard only says it could not read
/// one), before any connection.
pub(crate) fn files_missing(endpoint: &Endpoint, name: &str) -> Option<Error> {
    let Endpoint::Tcp {
        addr,
        tls: Some(files),
    } = endpoint
    else {
        return None;
    };
    missing_files(files).map(|found| found.error(name, addr, Some(files)))
}

fn transport(err: &io::Error) -> Option<Found> {
    match err.kind() {
        io::ErrorKind::ConnectionRefused => Some(Found::Refused),
        io::ErrorKind::TimedOut
        | io::ErrorKind::HostUnreachable
        | io::ErrorKind::NetworkUnreachable => Some(Found::Silent),
        _ => None,
    }
}

impl Found {
    fn error(self, name: &str, addr: &str, tls: Option<&TlsFiles>) -> Error {
        let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
        let port = addr.rsplit_once(':').map_or("2376", |(_, p)| p);
        let dir = tls
            .and_then(|f| f.cert.parent())
            .unwrap_or(Path::new("~/.docker"))
            .display()
            .to_string();
        let (kind, message, hint) = match self {
            Found::Missing(files) => (
                ErrorKind::InvalidSpec,
                format!(
                    "the Docker daemon at {name} is reached with TLS, and {dir} has no {}",
                    files.join(", ")
                ),
                format!(
                    "put the daemon's CA (ca.pem) and a client certificate it signed (cert.pem, key.pem) in {dir}, \
                     or point {CERT_SETTINGS} at the folder that has them"
                ),
            ),
            Found::Refused => (
                ErrorKind::EngineUnavailable,
                format!("nothing listens at {addr}: the Docker daemon at {name} is not there"),
                format!(
                    "start dockerd on {host} listening on that port (`sudo systemctl start docker` with \
                     `-H tcp://0.0.0.0:{port}` in its configuration, or `dockerd -H tcp://0.0.0.0:{port}{}`), or fix \
                     the address",
                    if tls.is_some() {
                        " --tlsverify --tlscacert ca.pem --tlscert server-cert.pem --tlskey server-key.pem"
                    } else {
                        ""
                    }
                ),
            ),
            Found::Silent => (
                ErrorKind::EngineUnavailable,
                format!("no answer from {addr}: the Docker daemon at {name} is unreachable"),
                format!(
                    "check that {host} is up and that no firewall drops port {port}, or fix the address"
                ),
            ),
            Found::Tls(Refusal::UnknownIssuer) => (
                ErrorKind::EngineUnavailable,
                format!(
                    "the Docker daemon at {name} presented a certificate that the CA in {dir}/ca.pem did not sign"
                ),
                format!(
                    "put the CA that signed the daemon's certificate (dockerd's --tlscacert) in {dir}/ca.pem, or \
                     point {CERT_SETTINGS} at the folder made for this daemon"
                ),
            ),
            Found::Tls(Refusal::WrongName) => (
                ErrorKind::EngineUnavailable,
                format!("the Docker daemon's certificate does not name `{host}`, the host berth dialled ({name})"),
                format!(
                    "dial the daemon by a name its certificate holds (`openssl s_client -connect {addr} </dev/null \
                     2>/dev/null | openssl x509 -noout -ext subjectAltName` lists them), or reissue the daemon's \
                     certificate with subjectAltName including {host}"
                ),
            ),
            Found::Tls(Refusal::ClientCertificate) => (
                ErrorKind::EngineUnavailable,
                format!("the Docker daemon at {name} refused the client certificate {dir}/cert.pem"),
                format!(
                    "use a client certificate signed by the daemon's CA (its --tlscacert), with extendedKeyUsage \
                     clientAuth, as cert.pem and key.pem in {dir}"
                ),
            ),
            Found::Tls(Refusal::Other(why)) => (
                ErrorKind::EngineUnavailable,
                format!("TLS with the Docker daemon at {name} failed: {why}"),
                format!("check the files in {dir} against the daemon's --tlscacert, --tlscert and --tlskey"),
            ),
        };
        Error::new(kind, message)
            .with_engine(ENGINE)
            .with_operation(Operation::Connect)
            .with_hint(hint)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_nothing_listening() {
        // a port that was just free: connecting is refused
        let addr = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .to_string();
        let endpoint = Endpoint::Tcp {
            addr: addr.clone(),
            tls: None,
        };
        let original = Error::new(ErrorKind::EngineUnavailable, "client error (Connect)");
        let err = explain(
            &endpoint,
            &format!("tcp://{addr}"),
            Duration::from_secs(30),
            original,
        )
        .await;
        assert!(
            err.message()
                .starts_with(&format!("nothing listens at {addr}")),
            "{err}"
        );
        assert!(
            err.hint().unwrap_or_default().contains("dockerd -H tcp://"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn missing_client_files_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("ca.pem"), "pem").expect("ca");
        let endpoint = Endpoint::Tcp {
            addr: "127.0.0.1:1".into(),
            tls: Some(TlsFiles::in_dir(dir.path())),
        };
        let original = Error::new(ErrorKind::EngineUnavailable, "client error (Connect)");
        let err = explain(
            &endpoint,
            "tcp://127.0.0.1:1",
            Duration::from_secs(30),
            original,
        )
        .await;
        assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err}");
        assert!(err.message().ends_with("has no cert.pem, key.pem"), "{err}");
    }
}
