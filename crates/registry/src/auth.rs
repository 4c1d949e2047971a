//! Registry authentication: `WWW-Authenticate` challenges and bearer tokens.
//!
//! A registry says how it wants to be authenticated in the `WWW-Authenticate` header of a 401: `Basic` (send
//! the user's credentials with every request) or `Bearer realm=...,service=...,scope=...` (get a token from the
//! realm, with the credentials as basic auth if there are any, and send that). Tokens are cached per registry
//! and scope set until shortly before they expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_core::engine::{Credentials, Secret};
use serde::Deserialize;

/// How a registry asked to be authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Challenge {
    /// Send credentials as HTTP basic auth.
    Basic,
    /// Get a token from `realm`.
    Bearer {
        realm: String,
        service: Option<String>,
        /// Scopes the registry said the request needs (`repository:x:pull`), space separated.
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` value; `None` for schemes berth does not speak.
pub(crate) fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header
        .split_once(char::is_whitespace)
        .unwrap_or((header, ""));
    if scheme.eq_ignore_ascii_case("basic") {
        return Some(Challenge::Basic);
    }
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let params = parse_params(rest);
    Some(Challenge::Bearer {
        realm: params.get("realm")?.clone(),
        service: params.get("service").cloned(),
        scope: params.get("scope").cloned(),
    })
}

/// `key=value, key="quoted, value"` pairs (RFC 7235 auth-params), keys lowercased.
fn parse_params(text: &str) -> HashMap<String, String> {
    let mut params = HashMap::new();
    let mut chars = text.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return params;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(c) = chars.peek().copied().filter(|c| *c != ',') {
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// The `Authorization` value for basic auth.
pub(crate) fn basic_header(credentials: &Credentials) -> Secret {
    let raw = format!("{}:{}", credentials.username, credentials.password.expose());
    Secret::new(format!("Basic {}", STANDARD.encode(raw)))
}

/// The longest berth keeps a token, in seconds, whatever the token server says.
const MAX_TOKEN_LIFETIME: u64 = 24 * 60 * 60;

/// A token endpoint's answer (Docker's token spec: `token`, or OAuth's `access_token`).
#[derive(Deserialize)]
pub(crate) struct TokenResponse {
    #[serde(default)]
    token: Option<String>,
    #[serde(default)]
    access_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl TokenResponse {
    /// The token and how long it may be used; `None` if the answer holds no token.
    pub(crate) fn into_token(self) -> Option<(Secret, Duration)> {
        let token = self.token.or(self.access_token).filter(|t| !t.is_empty())?;
        // the spec's default lifetime is 60 s; stop using a token a little before the registry would refuse it.
        // The answer is the token server's: a lifetime past a day is taken as a day, so that no number it
        // sends can overflow the deadline computed from it.
        let lifetime =
            Duration::from_secs(self.expires_in.unwrap_or(60).clamp(1, MAX_TOKEN_LIFETIME));
        let margin = (lifetime / 10).min(Duration::from_secs(30));
        Some((Secret::new(format!("Bearer {token}")), lifetime - margin))
    }
}

/// A cached token and until when it may be used.
pub(crate) type Slot = Arc<tokio::sync::Mutex<Option<(Secret, Instant)>>>;

/// Bearer tokens by registry and scope set. Each key has its own async lock, held while a token is fetched,
/// so that many concurrent checks of one repository wait for one token request instead of each making one.
#[derive(Default)]
pub(crate) struct TokenCache {
    slots: Mutex<HashMap<String, Slot>>,
}

impl TokenCache {
    /// The cache key for `host` and `scopes`, as [`merged_scopes`] gives them (order-independent).
    pub(crate) fn key(host: &str, scopes: &[String]) -> String {
        format!("{host} {}", merged_scopes(scopes).join(" "))
    }

    /// The slot for `key`: lock it, use the token in it if [`valid`], else fetch one and store it.
    pub(crate) fn slot(&self, key: &str) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        slots.entry(key.to_string()).or_default().clone()
    }
}

/// `scopes` (`type:name:action,action`) with one entry per resource, its actions sorted and without repeats,
/// the entries sorted: what a token for them may do, written one way. A registry's challenge may list the
/// actions of a scope a request already asked for in another order (`push,pull`); a token renewed for both is
/// a token for that one scope.
pub(crate) fn merged_scopes(scopes: &[String]) -> Vec<String> {
    let mut resources: std::collections::BTreeMap<&str, std::collections::BTreeSet<&str>> =
        std::collections::BTreeMap::new();
    for scope in scopes {
        match scope.rsplit_once(':') {
            Some((resource, actions)) if resource.contains(':') => resources
                .entry(resource)
                .or_default()
                .extend(actions.split(',').filter(|a| !a.is_empty())),
            // not `type:name:actions`: kept whole
            _ => {
                resources.entry(scope.as_str()).or_default();
            }
        }
    }
    resources
        .into_iter()
        .map(|(resource, actions)| {
            if actions.is_empty() {
                resource.to_string()
            } else {
                format!(
                    "{resource}:{}",
                    actions.into_iter().collect::<Vec<_>>().join(",")
                )
            }
        })
        .collect()
}

/// The token in a slot, if it has not expired.
pub(crate) fn valid(entry: &Option<(Secret, Instant)>) -> Option<Secret> {
    entry
        .as_ref()
        .filter(|(_, until)| Instant::now() < *until)
        .map(|(token, _)| token.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges_with_quoted_commas() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.docker.io/token".into(),
                service: Some("registry.docker.io".into()),
                scope: Some("repository:library/busybox:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="berth-test-registry""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(
            parse_challenge("Bearer service=x"),
            None,
            "a bearer challenge needs a realm"
        );
    }

    #[test]
    fn tokens_expire_early_and_keys_ignore_order() {
        let t: TokenResponse =
            serde_json::from_str(r#"{"access_token":"abc","expires_in":300}"#).expect("json");
        let (token, lifetime) = t.into_token().expect("token");
        assert_eq!(token.expose(), "Bearer abc");
        assert_eq!(lifetime, Duration::from_secs(270));
        // u64::MAX seconds once panicked on `Instant::now() + lifetime`
        let huge: TokenResponse =
            serde_json::from_str(r#"{"token":"abc","expires_in":18446744073709551615}"#)
                .expect("json");
        let (_, lifetime) = huge.into_token().expect("token");
        assert_eq!(lifetime, Duration::from_secs(MAX_TOKEN_LIFETIME - 30));
        let _ = Instant::now() + lifetime;
        let a = TokenCache::key("h", &["b".into(), "a".into()]);
        assert_eq!(
            a,
            TokenCache::key("h", &["a".into(), "b".into(), "a".into()])
        );
        assert!(
            valid(&Some((token.clone(), Instant::now()))).is_none(),
            "expired"
        );
        let later = Instant::now() + Duration::from_secs(60);
        assert_eq!(valid(&Some((token.clone(), later))), Some(token));
        let cache = TokenCache::default();
        assert!(Arc::ptr_eq(&cache.slot(&a), &cache.slot(&a)));
    }

    #[test]
    fn scopes_merge_by_resource_whatever_the_order_of_their_actions() {
        let strings = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            merged_scopes(&strings(&[
                "repository:x:pull,push",
                "repository:x:push,pull",
                "repository:base/y:pull",
                "repository:x:push",
            ])),
            strings(&["repository:base/y:pull", "repository:x:pull,push"])
        );
        assert_eq!(
            TokenCache::key("h", &strings(&["repository:x:pull,push"])),
            TokenCache::key("h", &strings(&["repository:x:push", "repository:x:pull"]))
        );
        assert_ne!(
            TokenCache::key("h", &strings(&["repository:x:pull"])),
            TokenCache::key("h", &strings(&["repository:x:pull,push"]))
        );
        // a resource type with a class (`repository(plugin)`) and a name with a port-less host
        assert_eq!(
            merged_scopes(&strings(&["repository(plugin):p/q:pull", "odd"])),
            strings(&["odd", "repository(plugin):p/q:pull"])
        );
    }
}
