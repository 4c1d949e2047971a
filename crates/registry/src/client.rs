//! The client: one pooled HTTP client for every registry, the scheme each registry answers on, and sending a
//! request with whatever authentication the registry asked for.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use berth_core::engine::Secret;
use berth_core::{Error, ErrorKind, Result};
use reqwest::header::{HeaderValue, AUTHORIZATION, WWW_AUTHENTICATE};
use reqwest::{Request, RequestBuilder, Response, StatusCode};
use tokio::sync::OnceCell;

use crate::auth::{parse_challenge, Challenge, TokenCache};
use crate::body::error_body;
use crate::classify::{describe, status_failure, transport_failure, ENGINE};
use crate::credentials::{is_docker_hub, CredentialResolver, ResolvedCredentials};
use crate::options::RegistryOptions;
use crate::retry::Failure;

/// A registry client shared by every check, pull and push in a berth run. Cheap to clone: clones share the
/// connection pool, the per-registry state and the token cache.
#[derive(Clone)]
pub struct RegistryClient {
    pub(crate) inner: Arc<Inner>,
}

pub(crate) struct Inner {
    clients: Arc<HttpClients>,
    pub(crate) options: RegistryOptions,
    hosts: Mutex<HashMap<String, Arc<HostState>>>,
    pub(crate) tokens: TokenCache,
    /// The anonymous twin of this client, made on first use (see [`RegistryClient::anonymous`]).
    anonymous: OnceLock<RegistryClient>,
}

/// The HTTP clients, each made on first use (making one reads the system's CA certificates).
struct HttpClients {
    /// Certificates from `--ca-file`, trusted beside the system's.
    extra_roots: Vec<reqwest::Certificate>,
    connect_timeout: std::time::Duration,
    idle_timeout: std::time::Duration,
    /// Verifies certificates: used for every HTTPS registry not marked insecure, and for plain HTTP.
    verified: OnceLock<Built>,
    /// Skips verification: used only for HTTPS to insecure and loopback registries.
    unverified: OnceLock<Built>,
}

/// A client, or why it could not be made (kept, so every request says so).
type Built = std::result::Result<reqwest::Client, String>;

impl HttpClients {
    fn verified(&self) -> Result<&reqwest::Client> {
        Self::made(
            self.verified
                .get_or_init(|| Self::build(self.verified_builder())),
        )
    }

    fn verified_builder(&self) -> reqwest::ClientBuilder {
        self.extra_roots.iter().fold(self.builder(), |b, cert| {
            b.add_root_certificate(cert.clone())
        })
    }

    fn unverified(&self) -> Result<&reqwest::Client> {
        Self::made(
            self.unverified
                .get_or_init(|| Self::build(self.builder().danger_accept_invalid_certs(true))),
        )
    }

    fn builder(&self) -> reqwest::ClientBuilder {
        reqwest::Client::builder()
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .dns_resolver(std::sync::Arc::new(crate::resolve::SystemResolver))
            .connect_timeout(self.connect_timeout)
            .read_timeout(self.idle_timeout)
    }

    /// Building fails when the TLS library cannot start or the system's CA store holds certificates it
    /// refuses. A default client instead would drop the extra roots and every timeout, so the failure is
    /// kept and each request reports it.
    fn build(builder: reqwest::ClientBuilder) -> Built {
        builder.build().map_err(|e| {
            let mut cause = e.to_string();
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                cause = format!("{cause}: {s}");
                source = s.source();
            }
            cause
        })
    }

    fn made(built: &Built) -> Result<&reqwest::Client> {
        built.as_ref().map_err(|cause| {
            Error::new(
                ErrorKind::Io,
                format!("cannot set up HTTPS for registries: {cause}"),
            )
            .with_engine(ENGINE)
            .with_hint(
                "check the system's CA certificates (SSL_CERT_FILE, SSL_CERT_DIR, /etc/ssl/certs)",
            )
        })
    }
}

/// What berth learned about one registry.
pub(crate) struct HostState {
    /// The registry as references name it (`docker.io`, `127.0.0.1:5000`).
    pub(crate) registry: String,
    /// The host its API answers on (`registry-1.docker.io` for Docker Hub).
    api_host: String,
    insecure: bool,
    endpoint: OnceCell<Endpoint>,
    pub(crate) challenge: Mutex<Option<Challenge>>,
    pub(crate) credentials: OnceCell<Option<ResolvedCredentials>>,
}

/// Where a registry answered: scheme and host, and whether TLS verification is off for it.
#[derive(Debug, Clone)]
pub(crate) struct Endpoint {
    pub(crate) base: String,
    unverified_tls: bool,
}

/// One logical request: what it is for (messages, scopes).
pub(crate) struct Call<'a> {
    /// The operation, for errors: "check", "push blob", ...
    pub(crate) op: &'static str,
    /// Registry as references name it.
    pub(crate) registry: &'a str,
    /// What is being accessed, for messages (`host/repo:tag`).
    pub(crate) target: String,
    /// Token scopes the request needs (`repository:repo:pull`).
    pub(crate) scopes: Vec<String>,
}

impl std::fmt::Debug for RegistryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryClient")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Call<'_> {
    /// An error of `kind` about this call.
    pub(crate) fn error(&self, kind: ErrorKind, message: impl Into<String>) -> Error {
        Error::new(kind, message)
            .with_engine(ENGINE)
            .with_operation(self.op)
    }
}

impl RegistryClient {
    /// A client with `options`; fails if the CA file cannot be read.
    pub fn new(options: RegistryOptions) -> Result<Self> {
        let mut extra_roots = Vec::new();
        if let Some(path) = &options.ca_file {
            let pem = std::fs::read(path).map_err(|e| Error::io(path, e))?;
            extra_roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
                Error::invalid(format!("{} holds no PEM certificates: {e}", path.display()))
            })?;
        }
        let clients = HttpClients {
            extra_roots,
            connect_timeout: options.connect_timeout,
            idle_timeout: options.idle_timeout,
            verified: OnceLock::new(),
            unverified: OnceLock::new(),
        };
        if !clients.extra_roots.is_empty() {
            // made now, so a certificate the TLS library refuses is reported as the CA file's fault
            let verified = clients.verified_builder().build().map_err(|e| {
                let path = options
                    .ca_file
                    .as_deref()
                    .unwrap_or(std::path::Path::new(""));
                Error::invalid(format!(
                    "{}: a certificate in it cannot be used: {e}",
                    path.display()
                ))
                .with_engine(ENGINE)
            })?;
            let _ = clients.verified.set(Ok(verified));
        }
        Ok(RegistryClient::from_parts(Arc::new(clients), options))
    }

    fn from_parts(clients: Arc<HttpClients>, options: RegistryOptions) -> Self {
        RegistryClient {
            inner: Arc::new(Inner {
                clients,
                options,
                hosts: Mutex::new(HashMap::new()),
                tokens: TokenCache::default(),
                anonymous: OnceLock::new(),
            }),
        }
    }

    /// This client as a machine without any login would be: same options, connection pool and TLS settings,
    /// but [`CredentialResolver::anonymous`], so no credentials are ever sent, and its own per-registry state
    /// and token cache (a token fetched with the user's credentials must not answer for an anonymous client).
    /// Registries that ask for a bearer token still get the anonymous token request Docker makes for public
    /// images. Made once and shared by later calls; an anonymous client returns itself.
    pub fn anonymous(&self) -> RegistryClient {
        if self.is_anonymous() {
            return self.clone();
        }
        self.inner
            .anonymous
            .get_or_init(|| {
                RegistryClient::from_parts(
                    self.inner.clients.clone(),
                    RegistryOptions {
                        credentials: CredentialResolver::anonymous(),
                        ..self.inner.options.clone()
                    },
                )
            })
            .clone()
    }

    /// Whether this client never sends credentials ([`RegistryClient::anonymous`]).
    pub fn is_anonymous(&self) -> bool {
        self.inner.options.credentials.is_anonymous()
    }

    /// The options this client was made with.
    pub fn options(&self) -> &RegistryOptions {
        &self.inner.options
    }

    /// The client for one engine transfer (a pull, push or build) of an engine that reaches registries with
    /// berth's client: `shared` (the front end's one client) when there is one and it already allows every
    /// registry in `insecure`, else a new client with `credentials` first and those registries allowed, made
    /// from the shared client's options when there is one (so `--ca-file` holds) or from `fallback`.
    pub fn for_transfer(
        shared: Option<&RegistryClient>,
        fallback: &RegistryOptions,
        credentials: impl IntoIterator<Item = berth_core::engine::Credentials>,
        insecure: &[String],
    ) -> Result<RegistryClient> {
        if let Some(client) = shared {
            if insecure.iter().all(|h| client.options().is_insecure(h)) {
                return Ok(client.clone());
            }
        }
        let options = shared
            .map_or_else(|| fallback.clone(), |c| c.options().clone())
            .with_access(credentials, insecure);
        RegistryClient::new(options)
    }

    pub(crate) fn host(&self, registry: &str) -> Arc<HostState> {
        let mut hosts = self.inner.hosts.lock().unwrap_or_else(|p| p.into_inner());
        hosts
            .entry(registry.to_string())
            .or_insert_with(|| {
                let api_host = if is_docker_hub(registry) {
                    "registry-1.docker.io".to_string()
                } else {
                    registry.to_string()
                };
                Arc::new(HostState {
                    registry: registry.to_string(),
                    insecure: self.inner.options.is_insecure(&api_host),
                    api_host,
                    endpoint: OnceCell::new(),
                    challenge: Mutex::new(None),
                    credentials: OnceCell::new(),
                })
            })
            .clone()
    }

    pub(crate) fn http_verified(&self) -> Result<&reqwest::Client> {
        self.inner.clients.verified()
    }

    pub(crate) fn http(&self, endpoint: &Endpoint) -> Result<&reqwest::Client> {
        if endpoint.unverified_tls {
            self.inner.clients.unverified()
        } else {
            self.inner.clients.verified()
        }
    }

    /// The scheme `host` answers on, found once by pinging `/v2/` (which also tells how it authenticates).
    pub(crate) async fn endpoint(
        &self,
        host: &HostState,
        call: &Call<'_>,
    ) -> Result<Endpoint, Failure> {
        host.endpoint
            .get_or_try_init(|| self.ping(host, call))
            .await
            .cloned()
    }

    async fn ping(&self, host: &HostState, call: &Call<'_>) -> Result<Endpoint, Failure> {
        let mut candidates = vec![Endpoint {
            base: format!("https://{}", host.api_host),
            unverified_tls: host.insecure,
        }];
        if host.insecure {
            candidates.push(Endpoint {
                base: format!("http://{}", host.api_host),
                unverified_tls: false,
            });
        }
        let mut last = None;
        for endpoint in candidates {
            let url = format!("{}/v2/", endpoint.base);
            let request = self
                .http(&endpoint)?
                .get(&url)
                .timeout(self.inner.options.request_timeout);
            let response = match request.send().await {
                Ok(response) => response,
                Err(e) => {
                    // an insecure registry that does not speak TLS: try plain HTTP next, as Docker does
                    last = Some(transport_failure(call.op, &url, e));
                    continue;
                }
            };
            let status = response.status();
            let challenge = match status {
                s if s.is_success() => None,
                StatusCode::UNAUTHORIZED => Some(
                    response
                        .headers()
                        .get(WWW_AUTHENTICATE)
                        .and_then(|v| v.to_str().ok())
                        .and_then(parse_challenge)
                        .unwrap_or(Challenge::Basic),
                ),
                _ => {
                    let headers = response.headers().clone();
                    let body = error_body(response).await;
                    let mut failure = status_failure(call.op, &url, status, &headers, &body);
                    if failure.error.kind() == ErrorKind::NotFound {
                        failure.error = call.error(
                            ErrorKind::Protocol,
                            format!("{url} answered 404: {} does not look like a registry (no /v2/ API)", host.registry),
                        );
                    }
                    return Err(failure);
                }
            };
            *host.challenge.lock().unwrap_or_else(|p| p.into_inner()) = challenge;
            return Ok(endpoint);
        }
        Err(last.unwrap_or_else(|| {
            Failure::from(call.error(ErrorKind::Protocol, "no endpoint to try"))
        }))
    }

    /// Sends the request `build` makes (given the HTTP client and the registry's base URL), authenticated as
    /// the registry asks. A 401 that names a new challenge is answered once with fresh authentication when
    /// `resendable`; the response is returned whatever its status.
    pub(crate) async fn send(
        &self,
        call: &Call<'_>,
        resendable: bool,
        mut build: impl FnMut(&reqwest::Client, &str) -> RequestBuilder,
    ) -> Result<Response, Failure> {
        let host = self.host(call.registry);
        let endpoint = self.endpoint(&host, call).await?;
        let mut auth = self.authorization(&host, &endpoint, call, None).await?;
        let mut renewed = false;
        loop {
            let http = self.http(&endpoint)?;
            let mut request = build(http, &endpoint.base)
                .build()
                .map_err(|e| transport_failure(call.op, &call.target, e))?;
            if let Some(auth) = &auth {
                authorize(&mut request, auth, &endpoint, call)?;
            }
            let response = http
                .execute(request)
                .await
                .map_err(|e| transport_failure(call.op, &call.target, e))?;
            if response.status() == StatusCode::UNAUTHORIZED && resendable && !renewed {
                let challenge = response
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                if let Some(challenge) = challenge {
                    renewed = true;
                    let fresh = self
                        .authorization(&host, &endpoint, call, Some(challenge))
                        .await?;
                    if fresh.is_some() && fresh != auth {
                        auth = fresh;
                        continue;
                    }
                }
            }
            return Ok(response);
        }
    }

    /// The failure a non-success `response` means, read from its status and error body.
    pub(crate) async fn failure(&self, call: &Call<'_>, response: Response) -> Failure {
        let status = response.status();
        let headers = response.headers().clone();
        let body = error_body(response).await;
        let mut failure = status_failure(call.op, &call.target, status, &headers, &body);
        if failure.error.kind() == ErrorKind::Unauthorized {
            failure.error = self.unauthorized(call, &describe(status, &body));
        }
        failure
    }
}

/// Adds the `Authorization` header, but only towards the registry itself: an upload location or redirect on
/// another host (object storage) must not receive the registry's credentials.
fn authorize(
    request: &mut Request,
    auth: &Secret,
    endpoint: &Endpoint,
    call: &Call<'_>,
) -> Result<()> {
    let url = request.url();
    let origin = format!("{}://{}", url.scheme(), url.authority());
    if !origin.eq_ignore_ascii_case(&endpoint.base) {
        return Ok(());
    }
    let mut value = HeaderValue::from_str(auth.expose()).map_err(|_| {
        call.error(
            ErrorKind::InvalidSpec,
            "the credentials contain characters HTTP headers cannot carry",
        )
    })?;
    value.set_sensitive(true);
    request.headers_mut().insert(AUTHORIZATION, value);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_ca(path: &std::path::Path) -> Result<RegistryClient> {
        RegistryClient::new(RegistryOptions {
            ca_file: Some(path.to_path_buf()),
            ..RegistryOptions::default()
        })
    }

    #[test]
    fn a_ca_file_is_checked_when_the_client_is_made() {
        let dir = tempfile::tempdir().expect("temp dir");
        assert!(with_ca(std::path::Path::new("/etc/ssl/certs/ca-certificates.crt")).is_ok());

        let missing = with_ca(&dir.path().join("missing.pem")).expect_err("no such file");
        assert_eq!(missing.kind(), ErrorKind::NotFound, "{missing}");
        assert!(missing.to_string().contains("missing.pem"), "{missing}");

        let garbage = dir.path().join("garbage.pem");
        std::fs::write(
            &garbage,
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        )
        .expect("write");
        let refused = with_ca(&garbage).expect_err("not a certificate");
        assert_eq!(refused.kind(), ErrorKind::InvalidSpec, "{refused}");
        assert!(refused.to_string().contains("garbage.pem"), "{refused}");
    }
}
