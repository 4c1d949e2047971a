//! TCP with TLS to an engine that checks who calls: the server verified against one CA file (Docker's
//! `DOCKER_CERT_PATH` with `DOCKER_TLS_VERIFY`) or pinned to the one certificate the user accepted (LXD's
//! `servercerts/`, see [`pinned_client_config`]), a client certificate presented. Only the stream is made
//! here; [`crate::client::send`] speaks HTTP on it.

use std::io;
use std::path::Path;
use std::sync::Arc;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls;
pub use tokio_rustls::rustls::ClientConfig;

/// Connects to `addr` (`host:port`, `[v6]:port`), verifying the server against `ca` and presenting `cert`
/// with its `key` (PEM files).
pub async fn connect(
    addr: &str,
    ca: &Path,
    cert: &Path,
    key: &Path,
) -> io::Result<TlsStream<TcpStream>> {
    connect_with(addr, Arc::new(client_config(ca, cert, key)?)).await
}

/// Connects to `addr` (`host:port`, `[v6]:port`) with `config`.
pub async fn connect_with(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
) -> io::Result<TlsStream<TcpStream>> {
    let host = addr
        .rsplit_once(':')
        .map_or(addr, |(h, _)| h)
        .trim_start_matches('[')
        .trim_end_matches(']');
    let name = rustls::pki_types::ServerName::try_from(host.to_string())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    tokio_rustls::TlsConnector::from(config)
        .connect(name, stream)
        .await
}

/// A client configuration trusting only `ca` and presenting `cert` with `key`.
pub fn client_config(ca: &Path, cert: &Path, key: &Path) -> io::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
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
    let (chain, key) = client_identity(cert, key)?;
    builder()?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

/// A client configuration that trusts exactly the certificate in `server` (PEM) as the server's and presents
/// `cert` with `key`: what `lxc remote add` set up, checked as lxc checks it. The server must show that very
/// certificate and prove it holds its key; names and expiry are not looked at, since the user accepted this
/// certificate itself (LXD's are self-signed for a host name, and dialled by address).
pub fn pinned_client_config(
    server: &Path,
    cert: &Path,
    key: &Path,
) -> io::Result<rustls::ClientConfig> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;
    let pinned = CertificateDer::from_pem_file(server).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", server.display()),
        )
    })?;
    let (chain, key) = client_identity(cert, key)?;
    let verifier = Arc::new(crate::pinned::Pinned::new(pinned, provider()));
    builder()?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_client_auth_cert(chain, key)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn builder() -> io::Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

type Identity = (
    Vec<rustls::pki_types::CertificateDer<'static>>,
    rustls::pki_types::PrivateKeyDer<'static>,
);

/// The client certificate chain in `cert` and its key in `key` (PEM files).
fn client_identity(cert: &Path, key: &Path) -> io::Result<Identity> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let pem_error = |path: &Path, e: rustls::pki_types::pem::Error| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{}: {e}", path.display()),
        )
    };
    let chain = CertificateDer::pem_file_iter(cert)
        .map_err(|e| pem_error(cert, e))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(cert, e))?;
    let key = PrivateKeyDer::from_pem_file(key).map_err(|e| pem_error(key, e))?;
    Ok((chain, key))
}
