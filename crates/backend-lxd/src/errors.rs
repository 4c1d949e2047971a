//! berth errors for the LXD backend: the one function that maps LXD's answers to kinds ([`classify`]), and the
//! constructors every module uses so each error names the engine and the operation.

use berth_core::{Error, ErrorKind, Operation};
pub(crate) use berth_http::Failure;

use crate::client::Client;
use crate::remote::Remote;
use crate::ENGINE;

/// A new error of `kind` in `op`.
pub(crate) fn error(kind: ErrorKind, op: Operation, message: impl Into<String>) -> Error {
    Error::new(kind, message)
        .with_engine(ENGINE)
        .with_operation(op.as_str())
}

/// A local file error in `op`, naming `what`.
pub(crate) fn io_error(op: Operation, what: impl std::fmt::Display, err: std::io::Error) -> Error {
    let kind = berth_core::error::io_kind(&err);
    let full = kind == ErrorKind::ResourceExhausted;
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

/// A berth error for `failure` on the LXD server `client` reaches, through the REST engines' one mapping
/// ([`berth_http::failure`]); `message` (naming the API path) replaces the failure's own text, the kind and
/// whether to retry still come from the failure alone.
pub(crate) fn to_error(
    failure: Failure<'_>,
    op: Operation,
    client: &Client,
    message: Option<String>,
) -> Error {
    let service = format!("LXD at {}", client.name());
    let (start, tls) = match client.remote_server() {
        None => (
            format!(
                "start LXD (`lxd --group lxd &` then `lxd waitready`, or `systemctl start lxd`) and initialise \
                 it (`lxd init`); set {} if its socket is elsewhere",
                crate::EnvVars::LXD_DIR
            ),
            "berth reaches the local LXD over its unix socket only".to_string(),
        ),
        Some(remote) => (
            format!(
                "start LXD on {} and make it listen there (`lxc config set core.https_address :8443` on the \
                 server); `lxc remote list` shows where lxc thinks remote {} is",
                remote.addr, remote.name
            ),
            untrusted_server_hint(remote),
        ),
    };
    let lxd = berth_http::Service {
        engine: ENGINE,
        service: &service,
        start_hint: &start,
        permission_hint:
            "berth talks to LXD as a trusted client: add your user to the `lxd` group \
                          (`usermod -aG lxd $USER`, then log in again), or run as root",
        tls_hint: &tls,
        registry_ca_hint:
            "berth pulls and pushes for LXD with its own registry client: pass the registry's CA \
                           with --ca-file",
        insecure_hint:
            "the registry speaks plain HTTP: pass --insecure-registry HOST:PORT to berth",
    };
    berth_http::to_error(&lxd, &failure, op, message)
}

/// The fix when a remote server shows another certificate than the one `lxc remote add` accepted.
pub(crate) fn untrusted_server_hint(remote: &Remote) -> String {
    format!(
        "the server at {} did not show the certificate lxc accepted for remote {} ({}); if its certificate \
         changed on purpose, accept the new one: `lxc remote remove {name}` then `lxc remote add {name} {}`",
        remote.url(),
        remote.name,
        remote.server_cert().display(),
        remote.url(),
        name = remote.name,
    )
}

/// The fix when a remote server does not trust lxc's client certificate.
pub(crate) fn untrusted_client_hint(remote: &Remote) -> String {
    format!(
        "make the server trust this client's certificate: on the server, `lxc config trust add CERT` with a \
         copy of {} as CERT (or run `lxc config trust add` there for a token, then here `lxc remote remove {name}` \
         and `lxc remote add {name} TOKEN`)",
        remote.client_cert().display(),
        name = remote.name,
    )
}

/// The server `client` reaches did not answer a request (nothing listens, the socket refuses this user, the
/// connection broke, the TLS handshake failed).
pub(crate) fn unavailable(client: &Client, err: &std::io::Error, op: Operation) -> Error {
    to_error(Failure::Transport(err), op, client, None)
}

#[cfg(test)]
mod tests {
    use berth_core::ErrorStatus;

    use super::*;

    fn answer(code: u16, message: &str) -> Error {
        let socket = Client::Unix("/var/lib/lxd/unix.socket".into());
        let failure = Failure::Status { code, message };
        to_error(failure, Operation::Build, &socket, None)
    }

    #[test]
    fn answers_map_through_the_one_mapping() {
        assert_eq!(answer(404, "not found").kind(), ErrorKind::NotFound);
        let refused = answer(403, "not authorized");
        assert_eq!(refused.kind(), ErrorKind::Unauthorized);
        assert_eq!(answer(400, "bad config").kind(), ErrorKind::InvalidSpec);
        let busy = answer(503, "busy");
        assert_eq!(
            (busy.kind(), busy.status()),
            (ErrorKind::Unavailable, ErrorStatus::Temporary)
        );
    }

    #[test]
    fn a_socket_this_user_may_not_open_names_the_lxd_group() {
        let socket = &Client::Unix("/var/lib/lxd/unix.socket".into());
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let err = unavailable(socket, &denied, Operation::Connect);
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        assert!(
            err.hint().unwrap_or_default().contains("lxd` group"),
            "{err:?}"
        );
        let nobody = std::io::Error::from(std::io::ErrorKind::NotFound);
        let err = unavailable(socket, &nobody, Operation::Connect);
        assert!(
            err.hint().unwrap_or_default().contains("lxd init"),
            "{err:?}"
        );
    }
}
