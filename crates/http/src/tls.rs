//! TCP with TLS to an engine that checks who calls: the server verified against one CA file, a client
//! certificate presented (Docker's `DOCKER_CERT_PATH` with `DOCKER_TLS_VERIFY`, LXD's trusted client
//! certificates). Only the stream is made here; [`crate::client::send`] speaks HTTP on it.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;

/// Connects to `addr` (`host:port`, `[v6]:port`), verifying the server against `ca` and presenting `cert`
/// with its `key` (PEM files).
pub async fn connect(
    addr: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> io::Result<TlsStream<TcpStream>> {
    let config = client_config(ca, cert, key)?;
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
}

/// A client configuration trusting only `ca` and presenting `cert` with `key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> io::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let mut roots = rustls::RootCertStore::empty();
    for found in CertificateDer::pem_file_iter(ca).map_err(|e| pem_error(ca, e))? {
        roots
            .add(found.map_err(|e| pem_error(ca, e))?)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    }
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// Why a TLS connection to an engine failed, when the handshake (or the server's first answer) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The server's certificate is not signed by the CA this client trusts.
    UnknownIssuer,
    /// The server's certificate does not name the host dialled.
    WrongName,
    /// The server refused the client certificate (signed by a CA it does not trust, or none sent).
    ClientCertificate,
    /// Another TLS failure, in rustls's words.
    Other(String),
}

/// The TLS reason inside `err` (an error of [`connect`] or of reading from its stream), if it is one.
pub fn refusal(err: &io::Error) -> Option<Refusal> {
    use rustls::{AlertDescription as Alert, CertificateError as Cert, Error as Tls};
    let tls = err.get_ref()?.downcast_ref::<Tls>()?;
    Some(match tls {
        Tls::InvalidCertificate(Cert::UnknownIssuer | Cert::BadSignature) => Refusal::UnknownIssuer,
        Tls::InvalidCertificate(Cert::NotValidForName | Cert::NotValidForNameContext { .. }) => {
            Refusal::WrongName
        }
        Tls::AlertReceived(
            Alert::BadCertificate
            | Alert::UnknownCA
            | Alert::CertificateRequired
            | Alert::CertificateUnknown
            | Alert::UnsupportedCertificate,
        ) => Refusal::ClientCertificate,
        other => Refusal::Other(other.to_string()),
    })
}
