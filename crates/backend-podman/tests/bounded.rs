//! A Podman service that stops answering does not hang berth: a request that answers at once has a deadline
//! ([`PodmanOptions::request_timeout`], made short here). The service is a fake that answers only its ping; it
//! tests the client's bound, never Podman itself (the conformance suite runs the real service).

use std::time::Duration;

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_core::engine::ContainerEngine;
use berth_tests::fake_http::{Answer, FakeServer};

#[tokio::test]
async fn a_silent_service_fails_a_tag_at_the_deadline() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("podman.sock");
    // answers the first contact, then nothing
    let _server = FakeServer::unix(&socket, |request| {
        if request.target.ends_with("/_ping") {
            Answer::reply("200 OK", "", b"OK")
        } else {
            Answer::stall()
        }
    });
    let engine = PodmanEngine::new(PodmanOptions {
        socket: Some(format!("unix://{}", socket.display())),
        request_timeout: Duration::from_millis(300),
        ..PodmanOptions::default()
    })
    .expect("engine");
    let tagged = tokio::time::timeout(
        Duration::from_secs(60),
        engine.tag("127.0.0.1:5000/a/b:1", "127.0.0.1:5000/a/b:2"),
    )
    .await
    .expect("hung: a request without a deadline");
    let err = tagged.expect_err("no answer");
    assert!(err.to_string().contains("no answer within"), "{err}");
}
