//! Engine-API failures turned into berth errors: [`classify`] is the one place that decides the
//! [`ErrorKind`] and [`ErrorStatus`] of a failure from Docker, Podman or LXD.
//!
//! A REST engine fails in three ways: under the request (transport: read from the error's types by
//! [`crate::transport`]), with a status and a message, or inside a long operation's stream as an `error` line
//! that is text only. The daemons pass registry failures through (a pull that a registry refused, a push whose
//! certificate is not trusted) as that text, so [`registry_text`] reads it, narrowly: registry error codes as
//! containers/image and distribution print them (`unauthorized:`, `denied:`, `manifest unknown`), and Go's
//! TLS and resolver messages. A daemon's own `permission denied` on a file or a `not found` in a build step is
//! none of these.

use berth_core::error::says_no_space;
use berth_core::{Error, ErrorKind, ErrorStatus, Operation};

use crate::transport::{transport_of, Transport};

/// How a backend names itself in errors and what it tells a person to do; each backend fills one in.
#[derive(Debug, Clone, Copy)]
pub struct Service<'a> {
    /// The engine name errors carry (`docker`, `podman`, `lxd`).
    pub engine: &'static str,
    /// The service and where it was looked for, as in "cannot reach {service}".
    pub service: &'a str,
    /// How to start the service when nothing answers.
    pub start_hint: &'a str,
    /// What to do when the socket refuses this user.
    pub permission_hint: &'a str,
    /// What to do when the service's own certificate is not trusted (a TLS endpoint).
    pub tls_hint: &'a str,
    /// How to make the engine trust a registry's certificate: engines verify registries themselves, so
    /// berth's `--ca-file` does not reach them.
    pub registry_ca_hint: &'a str,
    /// How to let the engine use a plain-HTTP registry.
    pub insecure_hint: &'a str,
}

/// A failure as it reached the backend.
#[derive(Debug)]
pub enum Failure<'a> {
    /// No HTTP answer: an I/O, TLS or client-library error (its source chain is read, not its text).
    Transport(&'a (dyn std::error::Error + 'static)),
    /// A non-success HTTP status with the service's message.
    Status {
        /// The HTTP status.
        code: u16,
        /// The service's message ([`message_of`] the body).
        message: &'a str,
    },
    /// An `error` line inside a build, push or pull stream. `in_step` says a build step (RUN, COPY...) was
    /// running, so the message is that step's failure and never a registry's.
    Stream {
        /// The line's text.
        message: &'a str,
        /// Whether a build step was running.
        in_step: bool,
    },
}

/// Why a failure is what it is, as far as it decides what to tell the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// Nothing more to say than the kind.
    Plain,
    /// Nothing answers where the service was looked for.
    NoService,
    /// The socket refused this user.
    SocketPermission,
    /// The service's own TLS certificate was refused.
    ServiceTls,
    /// A registry's certificate is not trusted by the engine.
    RegistryCertificate,
    /// A registry answered plain HTTP to the engine's HTTPS.
    PlainHttpRegistry,
    /// A registry's host name does not resolve.
    UnknownHost,
    /// A registry refused the credentials.
    Credentials,
}

/// What a failure is: its kind, whether retrying may help, and the cause that picks the hint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Class {
    /// The kind (what the CLI's exit status follows).
    pub kind: ErrorKind,
    /// Whether trying again may help.
    pub status: ErrorStatus,
    /// Why, for the hint.
    pub cause: Cause,
}

impl Class {
    fn new(kind: ErrorKind, cause: Cause) -> Self {
        let status = if kind == ErrorKind::Unavailable {
            ErrorStatus::Temporary
        } else {
            ErrorStatus::Permanent
        };
        Class {
            kind,
            status,
            cause,
        }
    }
}

impl From<ErrorKind> for Class {
    fn from(kind: ErrorKind) -> Self {
        Class::new(kind, Cause::Plain)
    }
}

/// The one mapping from engine-API failures to a [`Class`].
pub fn classify(failure: &Failure<'_>, op: Operation) -> Class {
    match failure {
        Failure::Transport(err) => match transport_of(*err) {
            Transport::NoService => Class::new(ErrorKind::EngineUnavailable, Cause::NoService),
            Transport::PermissionDenied => {
                Class::new(ErrorKind::EngineUnavailable, Cause::SocketPermission)
            }
            Transport::Tls => Class::new(ErrorKind::EngineUnavailable, Cause::ServiceTls),
            _ if op == Operation::Connect => {
                Class::new(ErrorKind::EngineUnavailable, Cause::NoService)
            }
            Transport::Malformed | Transport::Other => ErrorKind::Protocol.into(),
            Transport::TimedOut | Transport::Broken => ErrorKind::Unavailable.into(),
        },
        Failure::Status { code, message } => match code {
            400 => ErrorKind::InvalidSpec.into(),
            401 | 403 => Class::new(ErrorKind::Unauthorized, Cause::Credentials),
            404 => ErrorKind::NotFound.into(),
            // Conflict: removing an image a container uses, tagging onto a reference in use.
            409 => ErrorKind::InvalidSpec.into(),
            501 => ErrorKind::Unsupported.into(),
            // dockerd and libpod wrap registry failures (bad password, missing repository, untrusted
            // certificate) in a 500 whose only trace of the cause is the text.
            // a daemon's own full disk (pulling a layer, committing a container) is a 500 too, and no retry
            // makes room
            500 if says_no_space(message) => ErrorKind::ResourceExhausted.into(),
            500 => registry_text(message).unwrap_or(ErrorKind::Unavailable.into()),
            408 | 429 | 502..=599 => ErrorKind::Unavailable.into(),
            _ => ErrorKind::Protocol.into(),
        },
        Failure::Stream { message, in_step } => {
            if says_no_space(message) {
                return ErrorKind::ResourceExhausted.into();
            }
            if *in_step {
                return ErrorKind::BuildFailed.into();
            }
            match registry_text(message) {
                Some(class) => class,
                None if op == Operation::Build => ErrorKind::BuildFailed.into(),
                None => ErrorKind::Protocol.into(),
            }
        }
    }
}

/// What a registry failure passed through as text says. Only asked about messages that cannot be a build
/// step's own output; `None` when it is not recognisably a registry's.
pub fn registry_text(message: &str) -> Option<Class> {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    // Go's crypto/x509 and crypto/tls, as dockerd and containers/image print them
    if has(&[
        "x509: ",
        "tls: failed to verify certificate",
        "certificate signed by unknown authority",
    ]) {
        return Some(Class::new(ErrorKind::Protocol, Cause::RegistryCertificate));
    }
    if has(&["server gave http response to https client"]) {
        return Some(Class::new(ErrorKind::Protocol, Cause::PlainHttpRegistry));
    }
    if has(&[
        "manifest unknown",
        "name unknown",
        "blob unknown",
        "repository does not exist",
        "no such image",
        "image not known",
    ]) || (m.contains("manifest for ") && m.contains(" not found"))
    {
        return Some(ErrorKind::NotFound.into());
    }
    if has(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "incorrect username or password",
        "requested access to the resource is denied",
    ]) || registry_code(&m, "denied")
    {
        return Some(Class::new(ErrorKind::Unauthorized, Cause::Credentials));
    }
    // Go's resolver: the name does not exist (a typo, or a host only another network knows)
    if has(&["no such host"]) {
        return Some(Class::new(ErrorKind::InvalidSpec, Cause::UnknownHost));
    }
    // content that is not what its digest or length said (containers/image, containerd's fetcher): the
    // daemon refused it, and the same registry answer gives the same refusal
    if has(&[
        "does not match expected",
        "digest did not match",
        "digest mismatch",
        "unexpected commit digest",
        "unexpected end of json input",
    ]) {
        return Some(ErrorKind::Protocol.into());
    }
    if has(&[
        "toomanyrequests",
        "too many requests",
        "timeout",
        "timed out",
        "connection reset",
        "temporary failure",
        "503 service unavailable",
        // containers/image: `invalid status code from registry 503 (Service Unavailable)`
        "(service unavailable)",
        "(bad gateway)",
        "(gateway timeout)",
        "502 bad gateway",
        "504 gateway timeout",
        // an answer cut short (a base-image download whose connection closed mid-body)
        "unexpected eof",
    ]) {
        return Some(ErrorKind::Unavailable.into());
    }
    None
}

/// Whether `code` appears as a registry error code does in a Go error chain (`denied: requested access...`
/// after a `: ` or at the start), and not as the end of a system error (`open /x: permission denied`).
fn registry_code(message: &str, code: &str) -> bool {
    let tag = format!("{code}:");
    message.match_indices(&tag).any(|(at, _)| {
        let before = &message[..at];
        before.is_empty() || before.ends_with(": ") || before.ends_with('\n')
    })
}

/// The `message` of an engine's JSON error body (`{"message": ...}` for dockerd, `{"cause", "message",
/// "response"}` for libpod, `{"error": ...}` for LXD), or the body as text.
pub fn message_of(body: &[u8]) -> String {
    serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|value| {
            ["message", "error"]
                .iter()
                .find_map(|f| value.get(*f).and_then(|v| v.as_str()).map(str::to_string))
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string())
}

/// A berth error for `failure` in `op` on `service`: the kind and status from [`classify`], a message (the
/// caller's `message` if given, e.g. naming the failing step and its output; otherwise the failure's own
/// text) and the hint its cause calls for.
pub fn to_error(
    service: &Service<'_>,
    failure: &Failure<'_>,
    op: Operation,
    message: Option<String>,
) -> Error {
    let class = classify(failure, op);
    let detail = match failure {
        Failure::Transport(e) => e.to_string(),
        Failure::Status { code, message } => format!("{message} (HTTP {code})"),
        Failure::Stream { message, .. } => message.trim_end().to_string(),
    };
    let message = match (class.kind, message) {
        (_, Some(message)) => message,
        (ErrorKind::EngineUnavailable, None) => {
            format!("cannot reach {}: {detail}", service.service)
        }
        (_, None) => detail,
    };
    let error = Error::new(class.kind, message)
        .with_status(class.status)
        .with_engine(service.engine)
        .with_operation(op);
    match hint(service, class.cause) {
        Some(hint) => error.with_hint(hint),
        None => error,
    }
}

fn hint<'a>(service: &Service<'a>, cause: Cause) -> Option<&'a str> {
    match cause {
        Cause::Plain => None,
        Cause::NoService => Some(service.start_hint),
        Cause::SocketPermission => Some(service.permission_hint),
        Cause::ServiceTls => Some(service.tls_hint),
        Cause::RegistryCertificate => Some(service.registry_ca_hint),
        Cause::PlainHttpRegistry => Some(service.insecure_hint),
        Cause::UnknownHost => {
            Some("check the registry's host name, and that the engine's host can resolve it")
        }
        Cause::Credentials => {
            Some("check the user name and password or token given for this registry")
        }
    }
}

#[cfg(test)]
#[path = "failure_tests.rs"]
mod tests;
