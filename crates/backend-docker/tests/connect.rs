//! Reaching (or failing to reach) a daemon: `DOCKER_HOST` is honoured, and a daemon that is missing, refuses
//! connections or never answers is an `EngineUnavailable` error within the ping timeout, with a hint that says
//! how to start one. One test function, because it changes `DOCKER_HOST` for the whole process.

mod common;

use std::time::{Duration, Instant};

use berth_backend_docker::{DockerEngine, DockerOptions, SelectedBuilder};
use berth_core::engine::ContainerEngine;
use berth_core::ErrorKind;

async fn unavailable(what: &str, options: DockerOptions) {
    let started = Instant::now();
    let err = match DockerEngine::connect(options).await {
        Ok(engine) => panic!("{what}: connected to {engine:?}"),
        Err(err) => err,
    };
    let took = started.elapsed();
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{what}: {err}");
    assert!(
        took < Duration::from_secs(3),
        "{what}: took {took:?} to give up"
    );
    let hint = err.hint().unwrap_or_default();
    assert!(
        hint.contains("systemctl start docker") && hint.contains("dockerd"),
        "{what}: {err}"
    );
}

#[tokio::test]
async fn docker_host_is_honoured_and_an_absent_daemon_fails_fast() {
    if common::env().is_none() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");

    // A socket path with nothing behind it, from DOCKER_HOST as the CLI reads it.
    let missing = dir.path().join("missing.sock");
    std::env::set_var("DOCKER_HOST", format!("unix://{}", missing.display()));
    unavailable("missing socket via DOCKER_HOST", DockerOptions::default()).await;

    // A socket file whose listener is gone: connection refused.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("bind"));
    std::env::set_var("DOCKER_HOST", format!("unix://{}", stale.display()));
    unavailable("refused socket", DockerOptions::default()).await;

    // A TCP port where nothing listens.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    std::env::set_var("DOCKER_HOST", format!("tcp://127.0.0.1:{port}"));
    unavailable("refused tcp", DockerOptions::default()).await;

    // A listener that accepts and never answers: the ping timeout ends the wait.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let silent_port = silent.local_addr().expect("addr").port();
    std::env::set_var("DOCKER_HOST", format!("tcp://127.0.0.1:{silent_port}"));
    unavailable(
        "silent daemon",
        DockerOptions {
            ping_timeout: Duration::from_millis(800),
            ..DockerOptions::default()
        },
    )
    .await;
    drop(silent);

    // An explicit host wins over DOCKER_HOST; the real daemon answers and says where it was reached.
    let socket = std::env::var("BERTH_TEST_DOCKER_SOCKET")
        .expect("BERTH_TEST_DOCKER_SOCKET is not set: run scripts/env/up.sh first");
    let engine = DockerEngine::connect(DockerOptions {
        host: Some(format!("unix://{socket}")),
        ..DockerOptions::default()
    })
    .await
    .expect("the test dockerd answers");
    let info = engine.info().await.expect("info");
    assert_eq!(info.endpoint, format!("unix://{socket}"));
    assert!(!info.version.is_empty(), "{info:?}");

    // DOCKER_HOST pointing at the real daemon works too.
    std::env::set_var("DOCKER_HOST", format!("unix://{socket}"));
    let engine = DockerEngine::connect(DockerOptions::default())
        .await
        .expect("DOCKER_HOST is honoured");
    assert_eq!(engine.endpoint_name(), format!("unix://{socket}"));
    std::env::remove_var("DOCKER_HOST");

    // Podman's Docker-compatible API answers, but has no BuildKit session: berth says so instead of failing
    // halfway through a build.
    let podman = std::env::var("BERTH_TEST_PODMAN_SOCKET")
        .expect("BERTH_TEST_PODMAN_SOCKET is not set: run scripts/env/up.sh first");
    let engine = DockerEngine::connect(DockerOptions {
        host: Some(format!("unix://{podman}")),
        ..DockerOptions::default()
    })
    .await
    .expect("Podman's compat API answers");
    assert_eq!(
        engine.builder().await.expect("builder"),
        SelectedBuilder::Classic
    );
    assert!(
        !engine
            .info()
            .await
            .expect("info")
            .capabilities
            .secret_mounts
    );
}
