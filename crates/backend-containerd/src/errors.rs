//! containerd failures as berth errors: [`classify`] is the one place that decides an [`ErrorKind`] from a gRPC
//! status; every error names the engine, the operation and, where there is one, what to do.

use berth_core::{Error, ErrorKind};
use containerd_client::tonic::{Code, Status};

use crate::ENGINE;

/// The operation a failure happened in.
pub(crate) use berth_core::Operation as Op;

/// The one mapping from gRPC status codes to [`ErrorKind`].
pub(crate) fn classify(code: Code, op: Op) -> ErrorKind {
    match code {
        Code::NotFound => ErrorKind::NotFound,
        Code::Unavailable => ErrorKind::EngineUnavailable,
        Code::PermissionDenied | Code::Unauthenticated => ErrorKind::EngineUnavailable,
        Code::DeadlineExceeded | Code::ResourceExhausted | Code::Aborted => ErrorKind::Unavailable,
        Code::Unimplemented => ErrorKind::Unsupported,
        Code::Cancelled => ErrorKind::Cancelled,
        Code::Unknown if op == Op::Connect => ErrorKind::EngineUnavailable,
        _ => ErrorKind::Protocol,
    }
}

/// A berth error for a gRPC status.
pub(crate) fn status_error(status: &Status, op: Op) -> Error {
    let kind = classify(status.code(), op);
    let mut error = Error::new(
        kind,
        format!("containerd: {} ({:?})", status.message(), status.code()),
    )
    .with_engine(ENGINE)
    .with_operation(op.as_str());
    let hint = match kind {
        ErrorKind::EngineUnavailable => Some(
            "start containerd (`systemctl start containerd`, or `containerd &` as root) and check CONTAINERD_ADDRESS",
        ),
        ErrorKind::Unsupported => Some("this containerd lacks a service berth needs: use containerd 1.6 or newer"),
        _ => None,
    };
    if let Some(hint) = hint {
        error = error.with_hint(hint);
    }
    error
}

/// The daemon could not be reached at `path`.
pub(crate) fn connect_error(path: &std::path::Path, why: &str) -> Error {
    let denied = why.contains("ermission denied");
    Error::new(
        ErrorKind::EngineUnavailable,
        format!("cannot reach containerd at unix://{}: {why}", path.display()),
    )
    .with_engine(ENGINE)
    .with_operation(Op::Connect.as_str())
    .with_hint(if denied {
        "containerd's socket belongs to root: run berth as root (containerd has no rootless build API)"
    } else {
        "start containerd (`systemctl start containerd`, or `containerd &` as root) or point CONTAINERD_ADDRESS at its socket"
    })
}

/// An error of `kind` in `op`, with a message.
pub(crate) fn error(kind: ErrorKind, op: Op, message: impl Into<String>) -> Error {
    Error::new(kind, message)
        .with_engine(ENGINE)
        .with_operation(op.as_str())
}

/// A local file error in `op`.
pub(crate) fn io_error(op: Op, what: impl std::fmt::Display, err: std::io::Error) -> Error {
    let kind = berth_core::error::io_kind(&err);
    let full = kind == ErrorKind::ResourceExhausted;
    let error = Error::new(kind, format!("{what}: {err}"))
        .with_engine(ENGINE)
        .with_operation(op.as_str());
    let error = if full {
        error.with_hint(
            "free space on the file system named above, or point BERTH_CONTAINERD_STATE_DIR at one with room",
        )
    } else {
        error
    };
    error.with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_kinds() {
        assert_eq!(classify(Code::NotFound, Op::Inspect), ErrorKind::NotFound);
        assert_eq!(
            classify(Code::Unavailable, Op::Build),
            ErrorKind::EngineUnavailable
        );
        assert_eq!(
            classify(Code::Unimplemented, Op::Pull),
            ErrorKind::Unsupported
        );
        assert_eq!(
            classify(Code::InvalidArgument, Op::Build),
            ErrorKind::Protocol
        );
    }

    #[test]
    fn unreachable_daemon_says_how_to_start_it() {
        let err = connect_error(
            std::path::Path::new("/run/x.sock"),
            "No such file or directory",
        );
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        assert!(err.hint().unwrap_or_default().contains("containerd"));
    }
}
