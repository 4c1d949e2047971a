//! Podman failures turned into berth errors: [`classify`] is the one place that decides an [`ErrorKind`].
//!
//! libpod answers short requests with an HTTP status and a JSON body (`{"cause", "message", "response"}`), and
//! long ones (build, push, pull) with 200 and a stream whose `{"error": ...}` line is the failure, as text only.
//! Only that last case forces reading message text; it is done in [`classify_text`], called from [`classify`]
//! and nowhere else.

use std::io;
use std::path::Path;

use berth_core::{Error, ErrorKind};

use crate::endpoint::start_hint;
use crate::ENGINE;

/// The operation a failure happened in; it decides what a transport error or stream message means.
pub(crate) use berth_core::Operation as Op;

/// A failure as it reached this crate.
#[derive(Debug)]
pub(crate) enum Failure<'a> {
    /// An I/O error on the connection to the service.
    Io(&'a io::Error),
    /// A non-success HTTP status, with the service's message.
    Status { code: u16, message: &'a str },
    /// An `error` line inside a build, push or pull stream. `in_step` says a build step other than `FROM` was
    /// running, so the message is that step's failure and never a registry's.
    Stream { message: &'a str, in_step: bool },
}

/// The one mapping from Podman failures to [`ErrorKind`].
pub(crate) fn classify(failure: &Failure<'_>, op: Op) -> ErrorKind {
    match failure {
        Failure::Io(err) => match err.kind() {
            io::ErrorKind::NotFound
            | io::ErrorKind::ConnectionRefused
            | io::ErrorKind::PermissionDenied
            | io::ErrorKind::AddrNotAvailable => ErrorKind::EngineUnavailable,
            _ if op == Op::Connect => ErrorKind::EngineUnavailable,
            io::ErrorKind::InvalidData => ErrorKind::Protocol,
            _ => ErrorKind::Temporary,
        },
        Failure::Status { code, message } => match code {
            400 => ErrorKind::InvalidSpec,
            401 | 403 => ErrorKind::Unauthorized,
            404 => ErrorKind::NotFound,
            // Conflict: removing an image a container uses.
            409 => ErrorKind::InvalidSpec,
            501 => ErrorKind::Unsupported,
            // libpod wraps registry failures in a 500 whose only trace of the cause is the text.
            500 => classify_text(message).unwrap_or(ErrorKind::Temporary),
            408 | 429 | 502..=599 => ErrorKind::Temporary,
            _ => ErrorKind::Protocol,
        },
        Failure::Stream { message, in_step } => {
            if op == Op::Build && is_cache_race(message) {
                return ErrorKind::Temporary;
            }
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

/// buildah 1.28 looks for a cached layer by walking every image in the store; an image removed meanwhile (by
/// any other client of the same service) fails that walk with `layer not known` before the step runs. The
/// error line is buildah's own text, never the step's output (that arrives as `stream` lines), and building
/// again succeeds.
fn is_cache_race(message: &str) -> bool {
    message.contains("checking if cached image exists from a previous build")
        && (message.contains("not known") || message.contains("unknown"))
}

/// What a registry error says in words (containers/image passes the registry's error codes through as text:
/// `unauthorized: authentication required`, `manifest unknown`, `toomanyrequests`). Only asked about messages
/// that cannot be a build step's own output.
fn classify_text(message: &str) -> Option<ErrorKind> {
    let m = message.to_ascii_lowercase();
    let has = |needles: &[&str]| needles.iter().any(|n| m.contains(n));
    if has(&[
        "manifest unknown",
        "name unknown",
        "repository does not exist",
        "image not known",
    ]) {
        Some(ErrorKind::NotFound)
    } else if has(&[
        "unauthorized",
        "authentication required",
        "denied",
        "incorrect username or password",
    ]) {
        Some(ErrorKind::Unauthorized)
    } else if has(&["not found", "does not exist", "no such image"]) {
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

/// A berth error for `failure`: kind from [`classify`], engine, operation and a hint that says what to do.
pub(crate) fn to_error(failure: Failure<'_>, op: Op, socket: &Path) -> Error {
    to_error_saying(failure, op, socket, None)
}

/// [`to_error`] with a message of the caller's (e.g. naming the failing step and its output) in place of the
/// failure's own text; the kind still comes from the failure alone.
pub(crate) fn to_error_saying(
    failure: Failure<'_>,
    op: Op,
    socket: &Path,
    message: Option<String>,
) -> Error {
    let kind = classify(&failure, op);
    let permission_denied =
        matches!(&failure, Failure::Io(e) if e.kind() == io::ErrorKind::PermissionDenied);
    let detail = match &failure {
        Failure::Io(e) => e.to_string(),
        Failure::Status { code, message } => format!("{message} (HTTP {code})"),
        Failure::Stream { message, .. } => message.trim_end().to_string(),
    };
    let message = match (kind, message) {
        (_, Some(message)) => message,
        (ErrorKind::EngineUnavailable, None) => format!(
            "cannot reach the Podman service at unix://{}: {detail}",
            socket.display()
        ),
        (_, None) => detail,
    };
    let mut error = Error::new(kind, message)
        .with_engine(ENGINE)
        .with_operation(op.as_str());
    let hint = match kind {
        ErrorKind::EngineUnavailable if permission_denied => Some(
            "your user may not use this socket: use your own user's service \
             ($XDG_RUNTIME_DIR/podman/podman.sock) or run as root"
                .to_string(),
        ),
        ErrorKind::EngineUnavailable => Some(start_hint(socket)),
        ErrorKind::Unauthorized => {
            Some("check the user name and password or token given for this registry".to_string())
        }
        _ => None,
    };
    if let Some(hint) = hint {
        error = error.with_hint(hint);
    }
    error
}

/// [`to_error`] for an I/O error, keeping it as the source.
pub(crate) fn io_error(err: io::Error, op: Op, socket: &Path) -> Error {
    to_error(Failure::Io(&err), op, socket).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stream(message: &str, in_step: bool, op: Op) -> ErrorKind {
        classify(&Failure::Stream { message, in_step }, op)
    }

    #[test]
    fn registry_messages_in_streams() {
        let unauthorized =
            "trying to reuse blob sha256:3a at destination: checking whether a blob \
                            exists in 127.0.0.1:5000/x: unauthorized: authentication required";
        assert_eq!(
            stream(unauthorized, false, Op::Push),
            ErrorKind::Unauthorized
        );
        let missing = "initializing source docker://r/x:1: reading manifest 1 in r/x: \
                       manifest unknown: manifest unknown";
        assert_eq!(stream(missing, false, Op::Pull), ErrorKind::NotFound);
        assert_eq!(stream(missing, false, Op::Build), ErrorKind::NotFound);
    }

    #[test]
    fn a_failing_step_is_a_build_failure_whatever_it_printed() {
        let message = "building at STEP \"RUN echo unauthorized; exit 1\": while running runtime: exit status 1";
        assert_eq!(stream(message, true, Op::Build), ErrorKind::BuildFailed);
        assert_eq!(stream("odd", false, Op::Build), ErrorKind::BuildFailed);
    }

    #[test]
    fn a_cache_lookup_racing_a_removal_is_temporary() {
        let message = "checking if cached image exists from a previous build: getting top layer info: layer not known";
        assert_eq!(stream(message, true, Op::Build), ErrorKind::Temporary);
    }

    #[test]
    fn statuses() {
        let status = |code| classify(&Failure::Status { code, message: "x" }, Op::Inspect);
        assert_eq!(status(404), ErrorKind::NotFound);
        assert_eq!(status(401), ErrorKind::Unauthorized);
        assert_eq!(status(503), ErrorKind::Temporary);
    }

    #[test]
    fn no_service_says_how_to_start_one() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err = to_error(
            Failure::Io(&refused),
            Op::Connect,
            Path::new("/run/user/7/podman/podman.sock"),
        );
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        assert!(err
            .hint()
            .unwrap_or_default()
            .contains("podman system service --time=0 unix:///run/user/7/podman/podman.sock"));
    }
}
