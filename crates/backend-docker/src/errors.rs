//! Docker failures turned into berth errors through the REST engines' one mapping ([`berth_http::failure`]).
//!
//! bollard reports HTTP statuses with the daemon's message, transport errors with an I/O or TLS error somewhere
//! in their source chain, and errors inside progress streams (build, push, pull) as bare text; this crate's
//! own BuildKit requests fail the same three ways. [`client_error`] unpacks bollard's error into those three
//! (deciding only what is bollard's alone: its configuration errors), and this module says how the daemon is
//! named and what to tell a person.

use std::io;

use berth_core::{Error, ErrorKind};
pub(crate) use berth_http::Failure;

use crate::ENGINE;

/// The operation a failure happened in; it decides what a transport error or stream message means.
pub(crate) use berth_core::Operation as Op;

/// How the daemon is named (`described`: "the Docker daemon at ...") and what to tell a person.
fn service(described: &str) -> berth_http::Service<'_> {
    berth_http::Service {
        engine: ENGINE,
        service: described,
        start_hint: "start the daemon (`sudo systemctl start docker`, or run `dockerd`), \
                     or point DOCKER_HOST at one that runs",
        permission_hint: "your user may not use the Docker socket: add it to the `docker` group \
                          (`sudo usermod -aG docker $USER`, then log in again) or run as root",
        tls_hint: "the daemon's certificate is not signed by the CA in DOCKER_CERT_PATH/ca.pem, or it \
                   refused the client certificate there: check DOCKER_CERT_PATH and DOCKER_HOST",
        registry_ca_hint: "the Docker daemon checks registry certificates itself (berth's --ca-file does \
                           not reach it): put the registry's CA in /etc/docker/certs.d/HOST:PORT/ca.crt",
        insecure_hint: "the registry speaks plain HTTP: list it in the daemon's `insecure-registries` \
                        (/etc/docker/daemon.json) and restart dockerd",
    }
}

/// A berth error for `failure`: kind and status from the shared mapping, engine, operation and hint.
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
    let described = format!("the Docker daemon at {endpoint}");
    berth_http::to_error(&service(&described), &failure, op, message)
}

/// Where the Docker address is set, for hints.
const SETTING: &str = "DOCKER_HOST (or berth.yaml's engine.docker.host)";

/// The berth error for an SSH failure somewhere in `err`'s chain, if there is one.
fn ssh_error(err: &(dyn std::error::Error + 'static), op: Op) -> Option<Error> {
    let ssh = berth_http::transport::find::<berth_http::ssh::SshError>(err)?;
    Some(berth_http::ssh::to_error(
        ssh,
        ENGINE,
        op,
        SETTING,
        "an IdentityFile for the host in ~/.ssh/config",
    ))
}

/// A berth error for a bollard error, keeping it as the source.
pub(crate) fn client_error(err: bollard::errors::Error, op: Op, endpoint: &str) -> Error {
    use bollard::errors::Error as B;
    // bollard's IOError is transparent: its source() skips the io::Error that carries ssh's error
    let ssh = match &err {
        B::IOError { err } => ssh_error(err, op),
        other => ssh_error(other, op),
    };
    if let Some(ssh) = ssh {
        return ssh;
    }
    let own = |kind: ErrorKind| {
        Error::new(kind, err.to_string())
            .with_engine(ENGINE)
            .with_operation(op)
    };
    let error = match &err {
        B::DockerResponseServerError {
            status_code,
            message,
        } => to_error(
            Failure::Status {
                code: *status_code,
                message,
            },
            op,
            endpoint,
        ),
        B::DockerStreamError { error } => to_error(
            Failure::Stream {
                message: error,
                in_step: false,
            },
            op,
            endpoint,
        ),
        B::RequestTimeoutError => {
            let timed_out = io::Error::new(io::ErrorKind::TimedOut, err.to_string());
            to_error(Failure::Transport(&timed_out), op, endpoint)
        }
        B::SocketNotFoundError(_) => {
            let missing = io::Error::new(io::ErrorKind::NotFound, err.to_string());
            to_error(Failure::Transport(&missing), op, endpoint)
        }
        B::UnsupportedURISchemeError { .. } => own(ErrorKind::Unsupported),
        B::CertPathError { .. }
        | B::CertMultipleKeys { .. }
        | B::CertParseError { .. }
        | B::NoHomePathError => own(ErrorKind::InvalidSpec),
        B::JsonDataError { .. } | B::JsonSerdeError { .. } | B::APIVersionParseError {} => {
            own(ErrorKind::Protocol)
        }
        other => to_error(Failure::Transport(other), op, endpoint),
    };
    error.with_source(err)
}

/// [`to_error`] for an I/O error on a connection of this crate's own, keeping it as the source.
pub(crate) fn io_error(err: io::Error, op: Op, endpoint: &str) -> Error {
    if let Some(ssh) = ssh_error(&err, op) {
        return ssh;
    }
    to_error(Failure::Transport(&err), op, endpoint).with_source(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_daemon_refusing_a_file_is_not_a_registry_refusing_credentials() {
        let err = client_error(
            bollard::errors::Error::DockerResponseServerError {
                status_code: 500,
                message: "error creating overlay mount to /var/lib/docker/overlay2/x/merged: \
                          permission denied"
                    .into(),
            },
            Op::Pull,
            "unix:///var/run/docker.sock",
        );
        assert_ne!(err.kind(), ErrorKind::Unauthorized, "{err}");
        assert!(err.hint().is_none(), "{err}");
    }

    #[test]
    fn an_untrusted_registry_names_dockers_certificate_folder() {
        let err = client_error(
            bollard::errors::Error::DockerStreamError {
                error:
                    "Get \"https://127.0.0.1:5002/v2/\": tls: failed to verify certificate: x509: \
                        certificate signed by unknown authority"
                        .into(),
            },
            Op::Push,
            "unix:///var/run/docker.sock",
        );
        assert!(!err.is_temporary(), "{err}");
        assert!(
            err.hint()
                .unwrap_or_default()
                .contains("/etc/docker/certs.d"),
            "{err}"
        );
    }

    #[test]
    fn transport_errors_mean_no_daemon() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err = io_error(refused, Op::Build, "unix:///x");
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        let denied = io::Error::from(io::ErrorKind::PermissionDenied);
        let err = io_error(denied, Op::Connect, "unix:///x");
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        assert!(err.hint().unwrap_or_default().contains("docker` group"));
        assert!(err
            .message()
            .starts_with("cannot reach the Docker daemon at unix:///x"));
    }
}
