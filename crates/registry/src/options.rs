//! How a [`crate::RegistryClient`] is set up.

use std::path::PathBuf;
use std::time::Duration;

use crate::credentials::CredentialResolver;
use crate::retry::RetryPolicy;

/// Options for [`crate::RegistryClient::new`].
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Registries (`host` or `host:port`) allowed plain HTTP and TLS without certificate verification, like
    /// Docker's `insecure-registries`. Loopback registries (`localhost`, 127.0.0.0/8, `::1`) are always
    /// treated so, as Docker does: traffic that never leaves the machine gains nothing from verification.
    /// For these berth tries HTTPS first and falls back to plain HTTP when the TLS connection fails.
    pub insecure: Vec<String>,
    /// Extra CA certificates (PEM) to trust, besides the system's.
    pub ca_file: Option<PathBuf>,
    /// Retries for temporary failures.
    pub retry: RetryPolicy,
    /// Where credentials come from.
    pub credentials: CredentialResolver,
    /// Limit for one request without a large body (checks, manifests, tokens). Blob transfers have no
    /// overall limit (a layer may take hours on a slow link); [`RegistryOptions::idle_timeout`] bounds them.
    pub request_timeout: Duration,
    /// Limit for any request to go without receiving a byte: a stalled blob upload (no answer) or download
    /// (no data) fails as a temporary error instead of hanging. Generous, because a registry may answer a
    /// large upload only after moving it into its storage.
    pub idle_timeout: Duration,
    /// Limit for opening a connection.
    pub connect_timeout: Duration,
    /// Upload blobs in chunks of this many bytes (`PATCH` each, then `PUT`); `None` sends each blob in one
    /// `PUT`, which every registry supports. Chunks help where a proxy limits request sizes.
    pub chunk_size: Option<u64>,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        RegistryOptions {
            insecure: Vec::new(),
            ca_file: None,
            retry: RetryPolicy::default(),
            credentials: CredentialResolver::from_env(),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(300),
            connect_timeout: Duration::from_secs(10),
            chunk_size: None,
        }
    }
}

/// Whether `registry` (`host`, `host:port`, `[v6]:port`) is on this machine.
pub fn is_loopback(registry: &str) -> bool {
    let host = host_part(registry);
    if host.eq_ignore_ascii_case("localhost") || host.to_ascii_lowercase().ends_with(".localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `registry` without its port.
fn host_part(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match registry.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') && port.chars().all(|c| c.is_ascii_digit()) => {
            host
        }
        _ => registry,
    }
}

impl RegistryOptions {
    /// These options with `credentials` tried first and the registries `insecure` names allowed plain HTTP or
    /// unverified TLS: what an engine that pulls and pushes itself (containerd, LXD) was given for one build or
    /// transfer.
    pub fn with_access(
        mut self,
        credentials: impl IntoIterator<Item = berth_core::engine::Credentials>,
        insecure: &[String],
    ) -> RegistryOptions {
        for c in credentials {
            self.credentials = self.credentials.with_credentials(c);
        }
        self.insecure.extend(insecure.iter().cloned());
        self
    }

    /// The registry of `reference` when a transfer may use plain HTTP with it (`options.insecure`), for
    /// [`RegistryOptions::with_access`].
    pub fn transfer_insecure(
        options: &berth_core::engine::TransferOptions,
        reference: &str,
    ) -> Vec<String> {
        match berth_core::reference::ImageRef::parse(reference) {
            Ok(image) if options.insecure => vec![image.registry],
            _ => Vec::new(),
        }
    }

    /// Whether `registry` may be reached over plain HTTP or unverified TLS.
    pub fn is_insecure(&self, registry: &str) -> bool {
        is_loopback(registry)
            || self.insecure.iter().any(|h| {
                h.eq_ignore_ascii_case(registry) || h.eq_ignore_ascii_case(host_part(registry))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_listed_hosts_are_insecure() {
        let options = RegistryOptions {
            insecure: vec!["reg.lan".into(), "other:8443".into()],
            ..RegistryOptions::default()
        };
        for yes in [
            "127.0.0.1:5000",
            "127.1.2.3",
            "localhost:5000",
            "[::1]:5000",
            "::1",
            "reg.lan:5000",
            "other:8443",
        ] {
            assert!(options.is_insecure(yes), "{yes}");
        }
        for no in [
            "ghcr.io",
            "10.0.0.1:5000",
            "other:9000",
            "docker.io",
            "localhost.example.com",
        ] {
            assert!(!options.is_insecure(no), "{no}");
        }
    }
}
