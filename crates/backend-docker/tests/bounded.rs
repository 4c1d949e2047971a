//! A daemon that stalls mid-stream does not hang berth: a push whose progress stream stops fails after
//! [`DockerOptions::idle_timeout`] (made short here). The daemon is a fake on a Unix socket that answers the
//! connection handshake (`/_ping`, `/version`, `/info`) and then stalls; it tests the client's bound, never
//! Docker itself (the conformance suite runs the real daemon).

use std::time::Duration;

use berth_backend_docker::{DockerEngine, DockerOptions};
use berth_core::engine::{ContainerEngine, NoProgress, TransferOptions};
use berth_core::ErrorKind;
use berth_tests::fake_http::{Answer, FakeServer};

fn json(body: &str) -> Answer {
    Answer::reply(
        "200 OK",
        "Content-Type: application/json\r\n",
        body.as_bytes(),
    )
}

#[tokio::test]
async fn a_push_whose_progress_stops_fails_at_the_idle_timeout() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let _server = FakeServer::unix(&socket, |request| {
        let path = request.target.split('?').next().unwrap_or_default();
        if path.ends_with("/_ping") {
            Answer::reply("200 OK", "Api-Version: 1.45\r\n", b"OK")
        } else if path.ends_with("/version") {
            json(r#"{"Version":"27.0.0","ApiVersion":"1.45","Os":"linux"}"#)
        } else if path.ends_with("/info") {
            json("{}")
        } else {
            // one progress message, then silence
            Answer::SendAndStall(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n\
                  1a\r\n{\"status\":\"Preparing\"}\r\n\r\n"
                    .to_vec(),
            )
        }
    });
    let engine = DockerEngine::new(DockerOptions {
        host: Some(format!("unix://{}", socket.display())),
        idle_timeout: Duration::from_millis(300),
        ..DockerOptions::default()
    })
    .expect("engine");
    let pushed = tokio::time::timeout(
        Duration::from_secs(60),
        engine.push(
            "127.0.0.1:5000/a/b:1",
            &TransferOptions::default(),
            &NoProgress,
        ),
    )
    .await
    .expect("hung: a stream without an idle timeout");
    let err = pushed.expect_err("the daemon went silent");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.to_string().contains("sent nothing"), "{err}");
}
