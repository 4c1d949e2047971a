//! berth errors for the LXD backend: the one function that maps LXD's answers to kinds ([`classify`]), and the
//! constructors every module uses so each error names the engine and the operation.

use berth_core::{Error, ErrorKind, Operation};
use http::StatusCode;

use crate::ENGINE;

/// A new error of `kind` in `op`.
pub(crate) fn error(kind: ErrorKind, op: Operation, message: impl Into<String>) -> Error {
    Error::new(kind, message)
        .with_engine(ENGINE)
        .with_operation(op.as_str())
}

/// A local file error in `op`, naming `what`.
pub(crate) fn io_error(op: Operation, what: impl std::fmt::Display, err: std::io::Error) -> Error {
    let kind = match err.kind() {
        std::io::ErrorKind::NotFound => ErrorKind::NotFound,
        _ => ErrorKind::Io,
    };
    let full = err.kind() == std::io::ErrorKind::StorageFull;
    let e = error(kind, op, format!("{what}: {err}"));
    if full {
        e.with_hint(format!(
            "free space on the file system named above, or point {} at one with room",
            crate::EnvVars::BERTH_LXD_STATE_DIR
        ))
    } else {
        e
    }
}

/// The kind of an LXD error answer: its HTTP status (LXD puts the same code in `error_code`).
pub(crate) fn classify(status: StatusCode) -> ErrorKind {
    match status.as_u16() {
        404 => ErrorKind::NotFound,
        401 | 403 => ErrorKind::Unauthorized,
        400 | 409 | 412 => ErrorKind::InvalidSpec,
        429 | 502..=504 => ErrorKind::Unavailable,
        _ => ErrorKind::Protocol,
    }
}

/// The hint for an error of `kind` from LXD.
pub(crate) fn hint(kind: ErrorKind) -> Option<&'static str> {
    match kind {
        ErrorKind::Unauthorized => Some(
            "berth talks to LXD as a trusted client: run it as root or as a member of the `lxd` group",
        ),
        ErrorKind::Unavailable => Some("LXD is busy; try again"),
        _ => None,
    }
}

/// The daemon cannot be reached on `socket`.
pub(crate) fn unavailable(socket: &std::path::Path, err: &std::io::Error) -> Error {
    let hint = match err.kind() {
        std::io::ErrorKind::PermissionDenied => {
            "add your user to the `lxd` group (`usermod -aG lxd $USER`, then log in again), or run as root"
                .to_string()
        }
        _ => format!(
            "start LXD (`lxd --group lxd &` then `lxd waitready`, or `systemctl start lxd`) and initialise it \
             (`lxd init`); set {} if its socket is elsewhere",
            crate::EnvVars::LXD_DIR
        ),
    };
    error(
        ErrorKind::EngineUnavailable,
        Operation::Connect,
        format!("cannot reach LXD on {}: {err}", socket.display()),
    )
    .with_hint(hint)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(classify(StatusCode::NOT_FOUND), ErrorKind::NotFound);
        assert_eq!(classify(StatusCode::FORBIDDEN), ErrorKind::Unauthorized);
        assert_eq!(classify(StatusCode::BAD_REQUEST), ErrorKind::InvalidSpec);
        assert_eq!(
            classify(StatusCode::SERVICE_UNAVAILABLE),
            ErrorKind::Unavailable
        );
        assert_eq!(
            classify(StatusCode::INTERNAL_SERVER_ERROR),
            ErrorKind::Protocol
        );
    }
}
