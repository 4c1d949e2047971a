//! The mapping on messages the daemons really send (dockerd 20.10-27, libpod 4.3-5).

use std::io;

use berth_core::{ErrorKind, ErrorStatus, Operation as Op};

use super::*;

const SERVICE: Service<'static> = Service {
    engine: "docker",
    service: "the Docker daemon at unix:///var/run/docker.sock",
    start_hint: "start the daemon",
    permission_hint: "join the docker group",
    tls_hint: "check DOCKER_CERT_PATH",
    registry_ca_hint: "put the CA in /etc/docker/certs.d/HOST/ca.crt",
    insecure_hint: "list it in insecure-registries",
};

fn stream(message: &str, op: Op) -> Class {
    classify(
        &Failure::Stream {
            message,
            in_step: false,
        },
        op,
    )
}

fn status(code: u16, message: &str, op: Op) -> Class {
    classify(&Failure::Status { code, message }, op)
}

#[test]
fn registry_messages_in_streams() {
    assert_eq!(
        stream("unauthorized: authentication required", Op::Push).kind,
        ErrorKind::Unauthorized
    );
    assert_eq!(
        stream(
            "denied: requested access to the resource is denied",
            Op::Push
        )
        .kind,
        ErrorKind::Unauthorized
    );
    let podman =
        "trying to reuse blob sha256:3a at destination: checking whether a blob exists in \
                  127.0.0.1:5000/x: unauthorized: authentication required";
    assert_eq!(stream(podman, Op::Push).kind, ErrorKind::Unauthorized);
    assert_eq!(
        stream("manifest for x:1 not found: manifest unknown", Op::Pull).kind,
        ErrorKind::NotFound
    );
    let missing = "initializing source docker://r/x:1: reading manifest 1 in r/x: manifest unknown";
    assert_eq!(stream(missing, Op::Pull).kind, ErrorKind::NotFound);
    assert_eq!(stream(missing, Op::Build).kind, ErrorKind::NotFound);
    let slow = stream("toomanyrequests: slow down", Op::Pull);
    assert_eq!(
        (slow.kind, slow.status),
        (ErrorKind::Unavailable, ErrorStatus::Temporary)
    );
}

#[test]
fn a_daemon_refused_a_file_is_not_a_registry_refusing_credentials() {
    // dockerd committing a layer onto a volume it may not write, and Podman's storage
    let messages = [
        "failed to register layer: open /var/lib/docker/overlay2/x/diff/etc: permission denied",
        "writing blob: adding layer with blob \"sha256:ab\": mkdir /home/u/.local/share/containers: \
         permission denied",
    ];
    for message in messages {
        for op in [Op::Pull, Op::Push] {
            let class = stream(message, op);
            assert_ne!(class.kind, ErrorKind::Unauthorized, "{message}");
            assert_eq!(class.cause, Cause::Plain, "{message}");
        }
        let class = status(500, message, Op::Pull);
        assert_ne!(class.kind, ErrorKind::Unauthorized, "{message}");
    }
}

#[test]
fn a_missing_file_is_not_a_missing_image() {
    // a volume path or context file the daemon could not find
    let message =
        "error while creating mount source path '/srv/data': mkdir /srv/data: file not found";
    assert_ne!(stream(message, Op::Pull).kind, ErrorKind::NotFound);
    assert_ne!(status(500, message, Op::Pull).kind, ErrorKind::NotFound);
    let copy = "failed to compute cache key: \"/src\" not found";
    assert_eq!(stream(copy, Op::Build).kind, ErrorKind::BuildFailed);
}

#[test]
fn an_untrusted_registry_certificate_gets_the_ca_hint_and_no_retry() {
    let dockerd = "Get \"https://127.0.0.1:5002/v2/\": tls: failed to verify certificate: x509: \
                   certificate signed by unknown authority";
    let podman = "initializing source docker://127.0.0.1:5002/x:1: pinging container registry \
                  127.0.0.1:5002: Get \"https://127.0.0.1:5002/v2/\": x509: certificate signed by \
                  unknown authority";
    for class in [status(500, dockerd, Op::Pull), stream(podman, Op::Pull)] {
        assert_eq!(class.status, ErrorStatus::Permanent);
        assert_eq!(class.cause, Cause::RegistryCertificate);
    }
    let failure = Failure::Status {
        code: 500,
        message: dockerd,
    };
    let err = to_error(&SERVICE, &failure, Op::Pull, None);
    assert!(!err.is_temporary(), "{err}");
    assert_ne!(err.kind(), ErrorKind::Unavailable);
    assert!(err.hint().unwrap_or_default().contains("certs.d"), "{err}");
}

#[test]
fn an_unknown_registry_host_is_not_retried() {
    let message = "Get \"https://nohost.invalid/v2/\": dial tcp: lookup nohost.invalid on \
                   127.0.0.53:53: no such host";
    let class = status(500, message, Op::Pull);
    assert_eq!(class.status, ErrorStatus::Permanent);
    assert_eq!(class.cause, Cause::UnknownHost);
}

#[test]
fn a_failing_step_is_a_build_failure_whatever_it_printed() {
    let message = "executor failed running [/bin/sh -c echo not found unauthorized; exit 1]";
    let in_step = Failure::Stream {
        message,
        in_step: true,
    };
    assert_eq!(classify(&in_step, Op::Build).kind, ErrorKind::BuildFailed);
    assert_eq!(
        stream("something odd", Op::Build).kind,
        ErrorKind::BuildFailed
    );
    assert_eq!(stream("something odd", Op::Push).kind, ErrorKind::Protocol);
}

#[test]
fn statuses() {
    assert_eq!(status(404, "x", Op::Inspect).kind, ErrorKind::NotFound);
    assert_eq!(status(401, "x", Op::Inspect).kind, ErrorKind::Unauthorized);
    assert_eq!(status(409, "x", Op::Remove).kind, ErrorKind::InvalidSpec);
    assert_eq!(status(503, "x", Op::Inspect).kind, ErrorKind::Unavailable);
    assert!(status(503, "x", Op::Inspect).status == ErrorStatus::Temporary);
    assert_eq!(status(500, "x", Op::Inspect).kind, ErrorKind::Unavailable);
    let wrapped = "Get http://r/v2/: unauthorized: authentication required";
    assert_eq!(status(500, wrapped, Op::Pull).kind, ErrorKind::Unauthorized);
}

#[test]
fn transport_errors() {
    let of = |kind, op| classify(&Failure::Transport(&io::Error::from(kind)), op);
    assert_eq!(
        of(io::ErrorKind::ConnectionRefused, Op::Build).kind,
        ErrorKind::EngineUnavailable
    );
    assert_eq!(
        of(io::ErrorKind::ConnectionReset, Op::Build).status,
        ErrorStatus::Temporary
    );
    assert_eq!(
        of(io::ErrorKind::ConnectionReset, Op::Connect).kind,
        ErrorKind::EngineUnavailable
    );
    let denied = io::Error::from(io::ErrorKind::PermissionDenied);
    let err = to_error(&SERVICE, &Failure::Transport(&denied), Op::Connect, None);
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable);
    assert_eq!(err.hint(), Some("join the docker group"));
    assert!(
        err.message().starts_with("cannot reach the Docker daemon"),
        "{err}"
    );
    assert_eq!(err.operation(), Some("connect"));
    // the service's own certificate refused: not worth retrying
    let tls = io::Error::new(
        io::ErrorKind::InvalidData,
        rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer),
    );
    let err = to_error(&SERVICE, &Failure::Transport(&tls), Op::Build, None);
    assert!(!err.is_temporary(), "{err}");
    assert_eq!(err.hint(), Some("check DOCKER_CERT_PATH"));
}

#[test]
fn error_bodies_give_their_message() {
    let podman = br#"{"cause":"image not known","message":"x: image not known","response":404}"#;
    assert_eq!(message_of(podman), "x: image not known");
    assert_eq!(
        message_of(br#"{"message":"No such image: x"}"#),
        "No such image: x"
    );
    assert_eq!(
        message_of(br#"{"error":"not found","error_code":404}"#),
        "not found"
    );
    assert_eq!(message_of(b"plain\n"), "plain");
}

#[test]
fn a_full_disk_is_resource_exhausted_and_not_retried() {
    // dockerd pulling a layer onto a full data root, and libpod committing a build step
    let pulled = status(
        500,
        "write /var/lib/docker/tmp/GetImageBlob123: no space left on device",
        Op::Pull,
    );
    assert_eq!(pulled.kind, ErrorKind::ResourceExhausted);
    assert_eq!(pulled.status, ErrorStatus::Permanent);
    let committed = stream(
        "committing container for step: copying layers: write /var/lib/containers/storage/overlay/x: \
         no space left on device",
        Op::Build,
    );
    assert_eq!(committed.kind, ErrorKind::ResourceExhausted);
    assert!(says_no_space(
        "dd: error writing '/big': No space left on device"
    ));
    assert!(!says_no_space("exit code: 1"));
}

#[test]
fn a_base_pull_the_registry_broke_is_not_a_build_failure() {
    // what dockerd 20.10 and libpod 4.3 said of a build's base pull through the fault proxy (tests/e2e/faults)
    let unavailable = [
        "creating build container: parsing image configuration: Error fetching blob: invalid status code \
         from registry 503 (Service Unavailable)",
        "creating build container: parsing image configuration: unexpected EOF",
        "failed to solve with frontend dockerfile.v0: failed to create LLB definition: failed to read \
         expected number of bytes: unexpected EOF",
    ];
    for message in unavailable {
        let class = stream(message, Op::Build);
        assert_eq!(class.kind, ErrorKind::Unavailable, "{message}");
        assert_eq!(class.status, ErrorStatus::Temporary, "{message}");
    }
    let refused = [
        "creating build container: parsing image configuration: Download config.json digest \
         sha256:50af does not match expected sha256:ff6d",
        "creating build container: initializing image from source docker://127.0.0.1:1/a:1: unexpected \
         end of JSON input",
        "creating build container: writing blob: storing blob to file \"/var/tmp/storage1/1\": happened \
         during read: Digest did not match, expected sha256:c1ff, got sha256:4a9f",
    ];
    for message in refused {
        assert_eq!(
            stream(message, Op::Build).kind,
            ErrorKind::Protocol,
            "{message}"
        );
    }
}
