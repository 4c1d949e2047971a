//! Docker failures turned into berth errors: [`classify`] is the one place that decides an [`ErrorKind`].
//!
//! bollard reports HTTP statuses with the daemon's message, transport errors with an I/O error somewhere in
//! their source chain, and errors inside progress streams (build, push, pull) as bare text. Only that last case
//! forces reading message text; it is done in [`classify_text`], called from [`classify`] and nowhere else.

use std::io;

use berth_core::{Error, ErrorKind};

use crate::ENGINE;

/// The operation a failure happened in; it decides what a transport error or stream message means.
pub(crate) use berth_core::Operation as Op;

/// A failure as it reached this crate.
#[derive(Debug)]
pub(crate) enum Failure<'a> {
    /// An error from bollard.
    Client(&'a bollard::errors::Error),
    /// An I/O error on a connection this crate opened itself (the BuildKit session path).
    Io(&'a io::Error),
    /// A non-success HTTP status from a request this crate sent itself, with the daemon's message.
    Status { code: u16, message: &'a str },
    /// An error message inside a build, push or pull stream. `in_step` says a build step (RUN, COPY...) was
    /// running, so the message is that step's failure and never a registry's.
    Stream { message: &'a str, in_step: bool },
}

/// The one mapping from Docker failures to [`ErrorKind`].
pub(crate) fn classify(failure: &Failure<'_>, op: Op) -> ErrorKind {
    use bollard::errors::Error as B;
    match failure {
        Failure::Client(err) => match err {
            B::DockerResponseServerError {
                status_code,
                message,
            } => classify(
                &Failure::Status {
                    code: *status_code,
                    message,
                },
                op,
            ),
            B::DockerStreamError { error } => classify(
                &Failure::Stream {
                    message: error,
                    in_step: false,
                },
                op,
            ),
            B::RequestTimeoutError => timeout_kind(op),
            B::SocketNotFoundError(_) => ErrorKind::EngineUnavailable,
            B::UnsupportedURISchemeError { .. } => ErrorKind::Unsupported,
            B::CertPathError { .. }
            | B::CertMultipleKeys { .. }
            | B::CertParseError { .. }
            | B::NoHomePathError => ErrorKind::InvalidSpec,
            B::JsonDataError { .. } | B::JsonSerdeError { .. } | B::APIVersionParseError {} => {
                ErrorKind::Protocol
            }
            other => match io_source(*other) {
                Some(io) => classify(&Failure::Io(io), op),
                None if op == Op::Connect => ErrorKind::EngineUnavailable,
                None => ErrorKind::Protocol,
            },
        },
        Failure::Io(err) => match err.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::AddrNotAvailable => ErrorKind::EngineUnavailable,
            _ if op == Op::Connect => ErrorKind::EngineUnavailable,
            io::ErrorKind::TimedOut => timeout_kind(op),
            _ => ErrorKind::Temporary,
        },
        Failure::Status { code, message } => match code {
            400 => ErrorKind::InvalidSpec,
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            // Conflict: removing an image a container uses, tagging onto a reference in use.
            409 => ErrorKind::InvalidSpec,
            501 => ErrorKind::Unsupported,
            // dockerd 20.10 wraps registry failures (bad password, missing repository) in a 500 whose only
            // trace of the cause is the text, so look at it before calling it a server fault.
            500 => classify_text(message).unwrap_or(ErrorKind::Temporary),
            408 | 429 | 502..=504 => ErrorKind::Temporary,
            500..=599 => ErrorKind::Temporary,
            _ => ErrorKind::Protocol,
        },
        Failure::Stream { message, in_step } => {
            if *in_step {
                return ErrorKind::BuildFailed;
            }
            match classify_text(message) {
                Some(kind) => kind,
                None if op == Op::Build => ErrorKind::BuildFailed,
                None => ErrorKind::Protocol,
            }
        }
    }
}

/// What a registry error says in words. The daemon passes registry failures through progress streams and 500
/// responses as text only (`unauthorized: authentication required`, `manifest unknown`, `toomanyrequests`),
/// so this is the one place that reads messages; it is only asked about messages that cannot be a build step's
/// own output.
fn classify_text(message: &str) -> Option<ErrorKind> {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&[
        "repository does not exist",
        "manifest unknown",
        "no such image",
    ]) {
        Some(ErrorKind::NotFound)
    } else if has(&[
        "unauthorized",
        "authentication required",
        "no basic auth credentials",
        "denied",
        "401 unauthorized",
        "incorrect username or password",
    ]) {
        Some(ErrorKind::Unauthorized)
    } else if has(&["not found", "does not exist"]) {
        Some(ErrorKind::NotFound)
    } else if has(&[
        "toomanyrequests",
        "timeout",
        "timed out",
        "connection reset",
        "temporary failure",
        "503 service unavailable",
    ]) {
        Some(ErrorKind::Temporary)
    } else {
        None
    }
}

fn timeout_kind(op: Op) -> ErrorKind {
    if op == Op::Connect {
        ErrorKind::EngineUnavailable
    } else {
        ErrorKind::Temporary
    }
}

/// The first I/O error in an error's source chain.
fn io_source<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a io::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(e) = current {
        if let Some(io) = e.downcast_ref::<io::Error>() {
            return Some(io);
        }
        current = e.source();
    }
    None
}

/// A berth error for `failure`: kind from [`classify`], engine, operation and a hint that says what to do.
pub(crate) fn to_error(failure: Failure<'_>, op: Op, endpoint: &str) -> Error {
    to_error_saying(failure, op, endpoint, None)
}

/// [`to_error`] with a message of the caller's (e.g. naming the failing build step and its output) in place
/// of the failure's own text; the kind still comes from the failure alone.
pub(crate) fn to_error_saying(
    failure: Failure<'_>,
    op: Op,
    endpoint: &str,
    message: Option<String>,
) -> Error {
    let kind = classify(&failure, op);
    let permission_denied = match &failure {
        Failure::Client(e) => io_source(*e).map(io::Error::kind),
        Failure::Io(e) => Some(e.kind()),
        _ => None,
    } == Some(io::ErrorKind::PermissionDenied);
    let detail = match &failure {
        Failure::Client(e) => e.to_string(),
        Failure::Io(e) => e.to_string(),
        Failure::Status { code, message } => format!("{message} (HTTP {code})"),
        Failure::Stream { message, .. } => message.to_string(),
    };
    let message = match kind {
        _ if message.is_some() => message.unwrap_or_default(),
        ErrorKind::EngineUnavailable => {
            format!("cannot reach the Docker daemon at {endpoint}: {detail}")
        }
        _ => detail,
    };
    let mut error = Error::new(kind, message)
        .with_engine(ENGINE)
        .with_operation(op.as_str());
    if let Some(hint) = hint(kind, permission_denied) {
        error = error.with_hint(hint);
    }
    error
}

/// [`to_error`] for a bollard error, keeping it as the source.
pub(crate) fn client_error(err: bollard::errors::Error, op: Op, endpoint: &str) -> Error {
    to_error(Failure::Client(&err), op, endpoint).with_source(err)
}

/// [`to_error`] for an I/O error on a connection of this crate's own, keeping it as the source.
pub(crate) fn io_error(err: io::Error, op: Op, endpoint: &str) -> Error {
    to_error(Failure::Io(&err), op, endpoint).with_source(err)
}

fn hint(kind: ErrorKind, permission_denied: bool) -> Option<&'static str> {
    match kind {
        ErrorKind::EngineUnavailable if permission_denied => Some(
            "your user may not use the Docker socket: add it to the `docker` group \
             (`sudo usermod -aG docker $USER`, then log in again) or run as root",
        ),
        ErrorKind::EngineUnavailable => Some(
            "start the daemon (`sudo systemctl start docker`, or run `dockerd`), \
             or point DOCKER_HOST at one that runs",
        ),
        ErrorKind::Unauthorized => {
            Some("check the user name and password or token given for this registry")
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(message: &str, in_step: bool, op: Op) -> ErrorKind {
        classify(&Failure::Stream { message, in_step }, op)
    }

    #[test]
    fn registry_messages_in_streams() {
        let unauthorized = "unauthorized: authentication required";
        assert_eq!(
            stream(unauthorized, false, Op::Push),
            ErrorKind::Unauthorized
        );
        assert_eq!(
            stream(
                "manifest for x:1 not found: manifest unknown",
                false,
                Op::Pull
            ),
            ErrorKind::NotFound
        );
        assert_eq!(
            stream("toomanyrequests: slow down", false, Op::Pull),
            ErrorKind::Temporary
        );
    }

    #[test]
    fn a_failing_step_is_a_build_failure_whatever_it_printed() {
        let message = "executor failed running [/bin/sh -c echo not found unauthorized; exit 1]";
        assert_eq!(stream(message, true, Op::Build), ErrorKind::BuildFailed);
        assert_eq!(
            stream("something odd", false, Op::Build),
            ErrorKind::BuildFailed
        );
    }

    #[test]
    fn statuses() {
        let status = |code| classify(&Failure::Status { code, message: "x" }, Op::Inspect);
        assert_eq!(status(404), ErrorKind::NotFound);
        assert_eq!(status(401), ErrorKind::Unauthorized);
        assert_eq!(status(503), ErrorKind::Temporary);
        let wrapped = Failure::Status {
            code: 500,
            message: "Get http://r/v2/: unauthorized: authentication required",
        };
        assert_eq!(classify(&wrapped, Op::Pull), ErrorKind::Unauthorized);
    }

    #[test]
    fn transport_errors_mean_no_daemon() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        assert_eq!(
            classify(&Failure::Io(&refused), Op::Build),
            ErrorKind::EngineUnavailable
        );
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let err = to_error(Failure::Io(&denied), Op::Connect, "unix:///x");
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        assert!(err.hint().unwrap_or_default().contains("docker` group"));
    }
}
