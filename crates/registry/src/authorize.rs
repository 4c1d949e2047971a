//! Choosing the `Authorization` for a request: the user's credentials as basic auth, or a bearer token fetched
//! with them; and the error that says which credentials a registry refused.

use berth_core::engine::Secret;
use berth_core::{Error, ErrorKind};
use reqwest::StatusCode;

use std::time::Instant;

use crate::auth::{basic_header, merged_scopes, valid, Challenge, TokenCache, TokenResponse};
use crate::body::{read_whole, MAX_TOKEN_BYTES};
use crate::classify::transport_failure;
use crate::client::{Call, Endpoint, HostState, RegistryClient};
use crate::credentials::ResolvedCredentials;
use crate::retry::{with_retry, Failure};

impl RegistryClient {
    /// Checks that `registry` accepts the credentials this client has for it, the way `docker login` does:
    /// `GET /v2/` authenticated as the registry asks (basic auth, or a token fetched without a repository
    /// scope). [`ErrorKind::Unauthorized`] if it refuses them, [`ErrorKind::InvalidSpec`] if there are none.
    /// A registry that needs no credentials at all accepts any.
    pub async fn check_login(&self, registry: &str) -> berth_core::Result<()> {
        let call = Call {
            op: "login",
            registry,
            target: registry.to_string(),
            scopes: Vec::new(),
        };
        let timeout = self.inner.options.request_timeout;
        with_retry(&self.inner.options.retry, || async {
            let host = self.host(registry);
            if self.credentials(&host, &call).await?.is_none() {
                return Err(call
                    .error(
                        ErrorKind::InvalidSpec,
                        format!("no credentials for {registry} to check"),
                    )
                    .into());
            }
            let response = self
                .send(&call, true, |http, base| {
                    http.get(format!("{base}/v2/")).timeout(timeout)
                })
                .await?;
            if response.status().is_success() {
                Ok(())
            } else {
                Err(self.failure(&call, response).await)
            }
        })
        .await
    }

    /// The user's credentials for `registry` as this client sends them, for an engine that pulls or pushes there
    /// itself: looked up once per registry per client, on a blocking thread, so a credential helper runs once
    /// however many existence checks, builds and pushes of a run need it.
    pub async fn credentials_for(
        &self,
        registry: &str,
    ) -> berth_core::Result<Option<ResolvedCredentials>> {
        let host = self.host(registry);
        let call = Call {
            op: "credentials",
            registry,
            target: registry.to_string(),
            scopes: Vec::new(),
        };
        self.credentials(&host, &call).await.map_err(|f| f.error)
    }

    /// The user's credentials for `host`, looked up once per client (helpers can be slow).
    pub(crate) async fn credentials(
        &self,
        host: &HostState,
        call: &Call<'_>,
    ) -> Result<Option<ResolvedCredentials>, Failure> {
        host.credentials
            .get_or_try_init(|| async {
                let resolver = self.inner.options.credentials.clone();
                let registry = host.registry.clone();
                tokio::task::spawn_blocking(move || resolver.resolve(&registry))
                    .await
                    .map_err(|e| {
                        call.error(
                            ErrorKind::Cancelled,
                            format!("credential lookup stopped: {e}"),
                        )
                    })?
                    .map_err(|e| Failure::from(e.with_engine(crate::classify::ENGINE)))
            })
            .await
            .cloned()
    }

    /// The `Authorization` value for `call`: nothing while the registry asks for none, basic auth or a bearer
    /// token otherwise. `renew` is a challenge from a 401 just received: the cached token is not reused and
    /// the challenge's scopes are added.
    pub(crate) async fn authorization(
        &self,
        host: &HostState,
        endpoint: &Endpoint,
        call: &Call<'_>,
        renew: Option<Challenge>,
    ) -> Result<Option<Secret>, Failure> {
        let renewing = renew.is_some();
        let challenge = match renew {
            Some(challenge) => {
                *host.challenge.lock().unwrap_or_else(|p| p.into_inner()) = Some(challenge.clone());
                challenge
            }
            None => match host
                .challenge
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
            {
                Some(challenge) => challenge,
                None => return Ok(None),
            },
        };
        let credentials = self.credentials(host, call).await?;
        let (realm, service, scope) = match challenge {
            Challenge::Basic => return Ok(credentials.map(|c| basic_header(&c.credentials))),
            Challenge::Bearer {
                realm,
                service,
                scope,
            } => (realm, service, scope),
        };
        let mut scopes = call.scopes.clone();
        if renewing {
            scopes.extend(scope.iter().flat_map(|s| s.split(' ')).map(str::to_string));
        }
        let scopes = merged_scopes(&scopes);
        let key = TokenCache::key(&host.registry, &scopes);
        let slot = self.inner.tokens.slot(&key);
        let mut entry = slot.lock().await;
        if !renewing {
            if let Some(token) = valid(&entry) {
                return Ok(Some(token));
            }
        }
        let (token, lifetime) = self
            .fetch_token(
                endpoint,
                call,
                &realm,
                service.as_deref(),
                &scopes,
                credentials.as_ref(),
            )
            .await?;
        // lifetime is bounded (auth.rs), but the deadline stays checked: a token without one is not cached
        let cached = Instant::now()
            .checked_add(lifetime)
            .map(|until| (token.clone(), until));
        *entry = cached.clone();
        drop(entry);
        // a challenge that asked for more than the call did puts the new token under another key; it can do
        // what the call asks too, and must replace the dead one the call's next requests would send
        if renewing {
            let own = TokenCache::key(&host.registry, &call.scopes);
            if own != key {
                *self.inner.tokens.slot(&own).lock().await = cached;
            }
        }
        Ok(Some(token))
    }

    async fn fetch_token(
        &self,
        endpoint: &Endpoint,
        call: &Call<'_>,
        realm: &str,
        service: Option<&str>,
        scopes: &[String],
        credentials: Option<&ResolvedCredentials>,
    ) -> Result<(Secret, std::time::Duration), Failure> {
        let mut query: Vec<(&str, &str)> = Vec::new();
        if let Some(service) = service {
            query.push(("service", service));
        }
        query.extend(scopes.iter().map(|s| ("scope", s.as_str())));
        // the realm is on the registry itself or on an auth server: only the former may skip verification
        let same_host = realm.starts_with(&format!("{}/", endpoint.base));
        let http = if same_host {
            self.http(endpoint)?
        } else {
            self.http_verified()?
        };
        let mut request = http
            .get(realm)
            .query(&query)
            .timeout(self.inner.options.request_timeout);
        if let Some(c) = credentials {
            let c = &c.credentials;
            request = request.basic_auth(&c.username, Some(c.password.expose()));
        }
        let response = request
            .send()
            .await
            .map_err(|e| transport_failure(call.op, realm, e))?;
        if !response.status().is_success() {
            let status = response.status();
            let mut failure = self.failure(call, response).await;
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                failure.error =
                    self.unauthorized(call, &format!("the token server {realm} answered {status}"));
            }
            return Err(failure);
        }
        let body = read_whole(call, realm, response, MAX_TOKEN_BYTES, "the token answer").await?;
        serde_json::from_slice::<TokenResponse>(&body)
            .ok()
            .and_then(TokenResponse::into_token)
            .ok_or_else(|| {
                Failure::from(call.error(
                    ErrorKind::Protocol,
                    format!("the token server {realm} answered without a token"),
                ))
            })
    }

    /// Whether `registry` asks for authentication at all: `GET /v2/` with no credentials and no token. `false`
    /// when it answers (a registry without auth, where anonymous pushes may work); `true` when it asks for
    /// credentials (a token registry such as Docker Hub asks too, even for public pulls).
    pub async fn requires_auth(&self, registry: &str) -> berth_core::Result<bool> {
        let call = Call {
            op: "ping",
            registry,
            target: registry.to_string(),
            scopes: Vec::new(),
        };
        let timeout = self.inner.options.request_timeout;
        let anonymous = self.anonymous();
        with_retry(&self.inner.options.retry, || async {
            // not resendable: a 401 is the answer, not a challenge to follow
            let response = anonymous
                .send(&call, false, |http, base| {
                    http.get(format!("{base}/v2/")).timeout(timeout)
                })
                .await?;
            match response.status() {
                status if status.is_success() => Ok(false),
                StatusCode::UNAUTHORIZED => Ok(true),
                _ => Err(anonymous.failure(&call, response).await),
            }
        })
        .await
    }

    /// An [`ErrorKind::Unauthorized`] error for `call` naming the registry, the credentials tried (never the
    /// secret) and how to fix it.
    pub(crate) fn unauthorized(&self, call: &Call<'_>, detail: &str) -> Error {
        let host = self.host(call.registry);
        let registry = &host.registry;
        let anonymous = self.is_anonymous();
        let (tried, hint) = match host.credentials.get().cloned().flatten() {
            None if anonymous => (
                "anonymously".to_string(),
                format!(
                    "an anonymous client (such as a cluster without pull secrets) cannot pull from here: make \
                     the repository public in {registry}'s settings, or give the puller credentials"
                ),
            ),
            Some(found) => (
                format!(
                    "using {} (user `{}`)",
                    found.origin, found.credentials.username
                ),
                crate::credentials::login_hint(registry, Some(&found.origin)),
            ),
            None => (
                format!(
                    "without credentials (none for {registry} in {})",
                    self.inner.options.credentials.locations().join(", ")
                ),
                crate::credentials::login_hint(registry, None),
            ),
        };
        call.error(
            ErrorKind::Unauthorized,
            format!(
                "{registry} refused access to {} {tried}: {detail}",
                call.target
            ),
        )
        .with_hint(hint)
    }
}
