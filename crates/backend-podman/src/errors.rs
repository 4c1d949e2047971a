//! Podman failures turned into berth errors through the REST engines' one mapping ([`berth_http::failure`]).
//!
//! libpod answers short requests with an HTTP status and a JSON body (`{"cause", "message", "response"}`), and
//! long ones (build, push, pull) with 200 and a stream whose `{"error": ...}` line is the failure, as text only.
//! This module only says how the Podman service is named and what to tell a person; the one thing it decides
//! itself is buildah's cache race ([`is_cache_race`]), the only failure of a build worth building again.

use std::io;

use berth_core::{Error, ErrorStatus};
pub(crate) use berth_http::Failure;

use crate::endpoint::{start_hint_for, Address, CONTAINER_SSHKEY};
use crate::ENGINE;

/// The operation a failure happened in; it decides what a transport error or stream message means.
pub(crate) use berth_core::Operation as Op;

/// A berth error for `failure` on the service at `socket`.
pub(crate) fn to_error(failure: Failure<'_>, op: Op, socket: &Address) -> Error {
    to_error_saying(failure, op, socket, None)
}

/// [`to_error`] with a message of the caller's (e.g. naming the failing step and its output) in place of the
/// failure's own text; the kind still comes from the failure alone.
pub(crate) fn to_error_saying(
    failure: Failure<'_>,
    op: Op,
    socket: &Address,
    message: Option<String>,
) -> Error {
    let service = format!("the Podman service at {}", socket.display());
    let start = start_hint_for(socket);
    let podman = berth_http::Service {
        engine: ENGINE,
        service: &service,
        start_hint: &start,
        permission_hint: "your user may not use this socket: use your own user's service \
                          ($XDG_RUNTIME_DIR/podman/podman.sock) or run as root",
        tls_hint: "the Podman service is reached over its unix socket only",
        registry_ca_hint:
            "Podman checks registry certificates itself (berth's --ca-file does not reach \
                           it): put the registry's CA in /etc/containers/certs.d/HOST:PORT/ca.crt \
                           (rootless: ~/.config/containers/certs.d/HOST:PORT/ca.crt)",
        insecure_hint:
            "the registry speaks plain HTTP: pass --insecure-registry HOST:PORT to berth, or \
                        mark it `insecure = true` in registries.conf",
    };
    let cache_race = op == Op::Build
        && matches!(&failure, Failure::Stream { message, .. } if is_cache_race(message));
    let error = berth_http::to_error(&podman, &failure, op, message);
    if cache_race {
        error.with_status(ErrorStatus::Temporary)
    } else {
        error
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

/// [`to_error`] for an I/O error, keeping it as the source; an SSH failure gets the fix for that failure.
pub(crate) fn io_error(err: io::Error, op: Op, socket: &Address) -> Error {
    if let Some(ssh) = berth_http::transport::find::<berth_http::ssh::SshError>(&err) {
        return berth_http::ssh::to_error(ssh, ENGINE, op, SETTING, CONTAINER_SSHKEY);
    }
    to_error(Failure::Transport(&err), op, socket).with_source(err)
}

/// Where a Podman address is set, for hints.
pub(crate) const SETTING: &str = "CONTAINER_HOST (or berth.yaml's engine.podman.socket)";

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::ErrorKind;

    fn stream(message: &str, in_step: bool, op: Op) -> Error {
        to_error(
            Failure::Stream { message, in_step },
            op,
            &Address::Unix("/run/podman/podman.sock".into()),
        )
    }

    #[test]
    fn a_cache_lookup_racing_a_removal_is_a_build_failure_worth_building_again() {
        let message =
            "checking if cached image exists from a previous build: getting top layer info: \
                       layer not known";
        let err = stream(message, true, Op::Build);
        assert_eq!(err.kind(), ErrorKind::BuildFailed);
        assert!(err.is_temporary(), "{err:?}");
    }

    #[test]
    fn other_build_failures_are_not_built_again() {
        // a base image pull the registry throttled: the workflow's push retry or the user decides, not a
        // whole rebuild inside the backend
        let err = stream("toomanyrequests: slow down", false, Op::Build);
        assert_eq!(err.kind(), ErrorKind::Unavailable);
        assert!(!is_cache_race(err.message()));
        let step = stream(
            "building at STEP \"RUN false\": exit status 1",
            true,
            Op::Build,
        );
        assert!(!step.is_temporary());
    }

    #[test]
    fn an_untrusted_registry_names_podmans_certificate_folder() {
        let message = "initializing source docker://127.0.0.1:5002/x:1: pinging container registry \
                       127.0.0.1:5002: Get \"https://127.0.0.1:5002/v2/\": x509: certificate signed by \
                       unknown authority";
        let err = stream(message, false, Op::Pull);
        assert!(!err.is_temporary());
        assert!(
            err.hint()
                .unwrap_or_default()
                .contains("/etc/containers/certs.d"),
            "{err}"
        );
    }

    #[test]
    fn no_service_says_how_to_start_one() {
        let refused = io::Error::from(io::ErrorKind::ConnectionRefused);
        let err = to_error(
            Failure::Transport(&refused),
            Op::Connect,
            &Address::Unix("/run/user/7/podman/podman.sock".into()),
        );
        assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
        assert!(err
            .hint()
            .unwrap_or_default()
            .contains("podman system service --time=0 unix:///run/user/7/podman/podman.sock"));
    }
}
