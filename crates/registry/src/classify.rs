//! Registry answers to [`ErrorKind`]s: the one place that decides what an HTTP status and a registry error body
//! mean, and the one place that maps the HTTP library's transport errors.
//!
//! Registries answer errors as `{"errors":[{"code":"MANIFEST_UNKNOWN","message":"...","detail":...}]}`
//! (distribution spec, "Error Codes"). The code decides before the status where they disagree, with one
//! deliberate exception documented on [`kind_for`].

use std::time::{Duration, SystemTime};

use berth_core::{Error, ErrorKind};
use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;

use crate::resolve::UnknownHost;
use crate::retry::Failure;
use berth_http::transport::find;

/// The engine name berth's errors from this crate carry.
pub(crate) const ENGINE: &str = "registry";

/// One entry of a registry's error body.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
pub(crate) struct RegistryError {
    #[serde(default)]
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<RegistryError>,
}

/// The error entries in `body`; none if it is not a registry error document.
pub(crate) fn parse_errors(body: &[u8]) -> Vec<RegistryError> {
    serde_json::from_slice::<ErrorBody>(body)
        .map(|b| b.errors)
        .unwrap_or_default()
}

/// Codes that say the thing asked for does not exist (distribution spec, plus Harbor's `NOT_FOUND`).
const NOT_FOUND_CODES: &[&str] = &[
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_UNKNOWN",
    "MANIFEST_UNKNOWN",
    "MANIFEST_BLOB_UNKNOWN",
    "NAME_UNKNOWN",
    "NOT_FOUND",
];

/// Codes that say the request named something invalid.
const INVALID_CODES: &[&str] = &["NAME_INVALID", "TAG_INVALID"];

/// Maps a registry's HTTP status and parsed error body to a kind. The only such mapping in berth-registry.
///
/// - 401, 403 and the `UNAUTHORIZED`/`DENIED` codes are [`ErrorKind::Unauthorized`].
/// - Codes that name something unknown, and 404, are [`ErrorKind::NotFound`].
/// - 408, 429, `TOOMANYREQUESTS` and 5xx are [`ErrorKind::Unavailable`] (retried), except:
/// - a 5xx whose body says (code `UNKNOWN` or none) that a repository or artifact was "not found" is
///   [`ErrorKind::NotFound`]. Harbor answers a missing repository that way
///   (`500 {"errors":[{"code":"UNKNOWN","message":"repository library/x not found"}]}`). Retrying that would
///   only delay the answer, and reporting it as unknown would hide that the image simply is not there, so the
///   message is read here, narrowly: only with that code, only on a 5xx, only for the words "not found".
/// - 405 and `UNSUPPORTED` are [`ErrorKind::Unsupported`] (e.g. deletes disabled).
/// - Everything else (other 4xx, unexpected 1xx/3xx) is [`ErrorKind::Protocol`].
pub(crate) fn kind_for(status: StatusCode, errors: &[RegistryError]) -> ErrorKind {
    let has = |codes: &[&str]| errors.iter().any(|e| codes.contains(&e.code.as_str()));
    if status == StatusCode::UNAUTHORIZED
        || status == StatusCode::FORBIDDEN
        || has(&["UNAUTHORIZED", "DENIED"])
    {
        return ErrorKind::Unauthorized;
    }
    if status == StatusCode::NOT_FOUND || has(NOT_FOUND_CODES) {
        return ErrorKind::NotFound;
    }
    if status == StatusCode::REQUEST_TIMEOUT
        || status == StatusCode::TOO_MANY_REQUESTS
        || has(&["TOOMANYREQUESTS"])
    {
        return ErrorKind::Unavailable;
    }
    if status.is_server_error() {
        let says_not_found = errors.iter().any(|e| {
            (e.code.is_empty() || e.code == "UNKNOWN")
                && e.message.to_ascii_lowercase().contains("not found")
        });
        return if says_not_found {
            ErrorKind::NotFound
        } else {
            ErrorKind::Unavailable
        };
    }
    if status == StatusCode::METHOD_NOT_ALLOWED || has(&["UNSUPPORTED"]) {
        return ErrorKind::Unsupported;
    }
    if has(INVALID_CODES) {
        return ErrorKind::InvalidSpec;
    }
    // DIGEST_INVALID, MANIFEST_INVALID, SIZE_INVALID, ...: berth sent something the registry refused
    ErrorKind::Protocol
}

/// The error for a registry's failed answer to `op` on `target`, with the server's wait request if any.
pub(crate) fn status_failure(
    op: &str,
    target: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
) -> Failure {
    let kind = kind_for(status, &parse_errors(body));
    let mut error = Error::new(kind, format!("{target}: {}", describe(status, body)))
        .with_engine(ENGINE)
        .with_operation(op);
    if kind == ErrorKind::Unavailable {
        error = error
            .with_hint("the registry is overloaded, restarting or unreachable; try again later");
    }
    Failure {
        error,
        retry_after: retry_after(headers),
    }
}

/// `HTTP <status>` and what the registry's error body says.
pub(crate) fn describe(status: StatusCode, body: &[u8]) -> String {
    let errors = parse_errors(body);
    let detail = if errors.is_empty() {
        let text = String::from_utf8_lossy(body);
        let text = text.trim();
        if text.is_empty() || text.len() > 200 {
            String::new()
        } else {
            format!(": {text}")
        }
    } else {
        let list: Vec<String> = errors
            .iter()
            .map(|e| match (e.code.is_empty(), e.message.is_empty()) {
                (false, false) => format!("{} ({})", e.message, e.code),
                (false, true) => e.code.clone(),
                _ => e.message.clone(),
            })
            .collect();
        format!(": {}", list.join("; "))
    };
    format!("HTTP {status}{detail}")
}

/// `url` without what may be a credential: its query (signed object-storage URLs carry their signature
/// there: `X-Amz-Signature`, `sig`, `token`), fragment and user info. For messages only.
pub(crate) fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) => {
            let hidden = parsed.query().is_some();
            parsed.set_query(None);
            parsed.set_fragment(None);
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            let mut text = parsed.to_string();
            if hidden {
                text.push_str("?…");
            }
            text
        }
        // not a URL: keep only what comes before a query
        Err(_) => match url.split_once('?') {
            Some((before, _)) => format!("{before}?…"),
            None => url.to_string(),
        },
    }
}

/// The error for a request that got no HTTP answer (connection refused or reset, TLS failure, timeout).
///
/// What went wrong is read from the error's types: a certificate nobody trusts ([`rustls::Error`] inside the
/// chain) and a host name that does not resolve ([`UnknownHost`]) are permanent, with a hint of their own;
/// connection failures and timeouts are temporary. reqwest's errors print the URL they were for, which for an
/// upload location or a redirect to object storage is a signed URL: it is dropped, and `target` (what berth
/// was doing) names the request instead.
pub(crate) fn transport_failure(op: &str, target: &str, err: reqwest::Error) -> Failure {
    let err = err.without_url();
    let target = redact_url(target);
    let untrusted = find::<rustls::Error>(&err).is_some();
    let unknown_host = find::<UnknownHost>(&err).map(|u| u.host.clone());
    let (kind, hint) = if let Some(host) = &unknown_host {
        let hint = format!(
            "check the registry's host name ({host} does not resolve on this machine) and its DNS setup"
        );
        (ErrorKind::InvalidSpec, Some(hint))
    } else if untrusted {
        let hint =
            "the registry's certificate is not trusted: pass --ca-file with the CA that signed it \
                    (or --insecure-registry HOST:PORT for a test registry)";
        (ErrorKind::Protocol, Some(hint.to_string()))
    } else if err.is_builder() || err.is_redirect() || (err.is_decode() && !body_cut(&err)) {
        (ErrorKind::Protocol, None)
    } else {
        // connect, timeout, request and body errors: the network or the server may recover
        (ErrorKind::Unavailable, None)
    };
    let mut cause = err.to_string();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(&err);
    while let Some(s) = source {
        cause = format!("{cause}: {s}");
        source = s.source();
    }
    let what = if unknown_host.is_some() {
        "unknown host"
    } else if untrusted {
        "certificate not trusted"
    } else if err.is_timeout() {
        "timed out"
    } else if err.is_connect() {
        "cannot connect"
    } else {
        "request failed"
    };
    let mut error = Error::new(kind, format!("{target}: {what}: {cause}"))
        .with_engine(ENGINE)
        .with_operation(op);
    if let Some(hint) = hint {
        error = error.with_hint(hint);
    }
    Failure::from(error.with_source(err))
}

/// Whether a decode error is really the body being cut off (closed early, reset, timed out while reading): reqwest
/// reports those as decode errors wrapping a body error, but the answer was never complete, so it is worth
/// another try, unlike a complete answer that does not parse.
fn body_cut(err: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(s) = source {
        if s.downcast_ref::<reqwest::Error>()
            .is_some_and(|e| e.is_body() || e.is_timeout())
            || s.downcast_ref::<std::io::Error>().is_some()
        {
            return true;
        }
        source = s.source();
    }
    false
}

/// `Retry-After` as a duration: delta-seconds or an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let when = httpdate::parse_http_date(value).ok()?;
    Some(
        when.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kind(status: u16, body: &str) -> ErrorKind {
        let status = StatusCode::from_u16(status).expect("status");
        kind_for(status, &parse_errors(body.as_bytes()))
    }

    #[test]
    fn statuses_and_codes_map_to_kinds() {
        assert_eq!(kind(401, ""), ErrorKind::Unauthorized);
        assert_eq!(
            kind(403, r#"{"errors":[{"code":"DENIED"}]}"#),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            kind(404, r#"{"errors":[{"code":"MANIFEST_UNKNOWN"}]}"#),
            ErrorKind::NotFound
        );
        assert_eq!(kind(429, ""), ErrorKind::Unavailable);
        assert_eq!(
            kind(503, "<html>bad gateway</html>"),
            ErrorKind::Unavailable
        );
        assert_eq!(
            kind(
                500,
                r#"{"errors":[{"code":"UNKNOWN","message":"unknown error"}]}"#
            ),
            ErrorKind::Unavailable
        );
        assert_eq!(kind(405, ""), ErrorKind::Unsupported);
        assert_eq!(
            kind(400, r#"{"errors":[{"code":"NAME_INVALID"}]}"#),
            ErrorKind::InvalidSpec
        );
        assert_eq!(
            kind(400, r#"{"errors":[{"code":"DIGEST_INVALID"}]}"#),
            ErrorKind::Protocol
        );
        assert_eq!(
            kind(400, r#"{"errors":[{"code":"MANIFEST_BLOB_UNKNOWN"}]}"#),
            ErrorKind::NotFound
        );
        assert_eq!(kind(302, ""), ErrorKind::Protocol);
    }

    #[test]
    fn harbor_missing_repository_500_is_not_found() {
        let harbor =
            r#"{"errors":[{"code":"UNKNOWN","message":"repository library/nope not found"}]}"#;
        assert_eq!(kind(500, harbor), ErrorKind::NotFound);
        let artifact = r#"{"errors":[{"code":"NOT_FOUND","message":"artifact x:1 not found"}]}"#;
        assert_eq!(kind(500, artifact), ErrorKind::NotFound);
        // another code with the same words is not reinterpreted
        let other = r#"{"errors":[{"code":"INTERNAL","message":"database not found"}]}"#;
        assert_eq!(kind(500, other), ErrorKind::Unavailable);
    }

    #[test]
    fn urls_lose_queries_and_user_info() {
        assert_eq!(
            redact_url("https://u:pw@s3.example/b/k?X-Amz-Signature=abc&X-Amz-Credential=x#f"),
            "https://s3.example/b/k?…"
        );
        assert_eq!(redact_url("http://h:5000/v2/"), "http://h:5000/v2/");
        assert_eq!(redact_url("not a url?sig=abc"), "not a url?…");
    }

    #[test]
    fn failures_name_status_codes_and_retry_after() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, "7".parse().expect("header"));
        let f = status_failure(
            "check",
            "r/x:1",
            StatusCode::SERVICE_UNAVAILABLE,
            &headers,
            br#"{"errors":[{"code":"UNAVAILABLE","message":"try later"}]}"#,
        );
        assert_eq!(f.retry_after, Some(Duration::from_secs(7)));
        assert_eq!(f.error.kind(), ErrorKind::Unavailable);
        assert_eq!(f.error.operation(), Some("check"));
        assert!(f.error.message().contains("503"), "{}", f.error);
        assert!(
            f.error.message().contains("try later (UNAVAILABLE)"),
            "{}",
            f.error
        );
    }
}
