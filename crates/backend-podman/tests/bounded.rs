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

/// A build whose base pull stops (buildah sets no limit on a registry that stops sending) gives up after
/// [`PodmanOptions::pull_idle_timeout`], naming the pull, though its RUN steps could be silent far longer.
#[tokio::test]
async fn a_build_whose_base_pull_stalls_fails_at_the_pull_limit_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("podman.sock");
    let base = "127.0.0.1:5000/a/b:1";
    let _server = FakeServer::unix(&socket, move |request| {
        if request.target.ends_with("/_ping") {
            Answer::reply("200 OK", "", b"OK")
        } else if request.target.contains("/build?") {
            // the step starts, the pull is tried, then nothing more
            let lines = format!(
                "{{\"stream\":\"STEP 1/2: FROM {base}\\n\"}}\n{{\"stream\":\"Trying to pull {base}...\\n\"}}\n"
            );
            let mut answer = b"HTTP/1.1 200 OK\r\n\r\n".to_vec();
            answer.extend_from_slice(lines.as_bytes());
            Answer::SendAndStall(answer)
        } else {
            Answer::reply("404 Not Found", "", b"{\"message\":\"no such thing\"}")
        }
    });
    let engine = PodmanEngine::new(PodmanOptions {
        socket: Some(format!("unix://{}", socket.display())),
        pull_idle_timeout: Duration::from_millis(300),
        ..PodmanOptions::default()
    })
    .expect("engine");
    let plan = berth_tests::conformance::support::plan(base, Vec::new());
    let options = berth_core::engine::BuildOptions::default();
    let built = tokio::time::timeout(
        Duration::from_secs(60),
        engine.build(&plan, &options, &berth_core::engine::NoProgress),
    )
    .await
    .expect("hung: a pull without a limit");
    let err = built.expect_err("a stalled pull");
    assert_eq!(err.kind(), berth_core::ErrorKind::Unavailable, "{err}");
    assert!(
        err.to_string()
            .contains(&format!("pulled {base} for the build")),
        "{err}"
    );
}
