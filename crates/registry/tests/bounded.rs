//! Every read from a registry is bounded: a server that stalls gets an idle timeout, one that sends an endless
//! body gets a cap. Each server here misbehaves on purpose ([`berth_tests::fake_http`]); the client's idle
//! timeout is made short through [`RegistryOptions::idle_timeout`]. Each test also runs under a generous
//! guard, so that a regression shows as a failure ("hung") rather than a test run that never ends.

use std::future::Future;
use std::time::Duration;

use berth_core::reference::ImageRef;
use berth_core::ErrorKind;
use berth_registry::{
    bytes_stream, describe_bytes, CredentialResolver, Existence, RegistryClient, RegistryOptions,
    RetryPolicy,
};
use berth_tests::fake_http::{Answer, FakeServer, Request};
use futures_util::StreamExt as _;

fn client() -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default()),
        retry: RetryPolicy::never(),
        idle_timeout: Duration::from_millis(300),
        ..RegistryOptions::default()
    })
    .expect("client")
}

/// Fails the test when `work` has not finished long after every bound of the client should have hit.
async fn bounded<T>(work: impl Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("hung: a read without a bound")
}

/// A registry answering `/v2/` itself and everything else as `rest` says.
fn registry(rest: impl Fn(&Request) -> Answer + Send + Sync + 'static) -> FakeServer {
    FakeServer::tcp(move |request| {
        if request.target == "/v2/" {
            Answer::reply("200 OK", "", b"")
        } else {
            rest(request)
        }
    })
}

fn image(server: &FakeServer) -> ImageRef {
    ImageRef::parse(&format!("{}/team/app:1", server.addr)).expect("reference")
}

#[tokio::test]
async fn a_stalled_upload_times_out() {
    let server = registry(|request| match request.method.as_str() {
        "POST" => Answer::reply("202 Accepted", "Location: /upload/1\r\n", b""),
        // takes the whole blob, then never answers
        _ => Answer::stall(),
    });
    let (digest, size) = describe_bytes(b"layer");
    let err =
        bounded(client().push_blob(&image(&server), &digest, size, bytes_stream(&b"layer"[..])))
            .await
            .expect_err("no answer to the upload");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
    assert!(err.message().contains("timed out"), "{err}");
    assert!(server.requests().iter().any(|r| r.method == "PUT"));
}

#[tokio::test]
async fn a_download_that_stops_sending_times_out() {
    let server = registry(|_| {
        Answer::SendAndStall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nfirst bytes".to_vec())
    });
    let (digest, _) = describe_bytes(b"whatever");
    let mut blob = bounded(client().get_blob(&image(&server), &digest))
        .await
        .expect("the answer starts");
    let first = bounded(blob.next()).await.expect("a chunk");
    assert_eq!(&first.expect("first bytes")[..], b"first bytes");
    let err = bounded(blob.next())
        .await
        .expect("an item")
        .expect_err("the rest never comes");
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn a_server_that_never_answers_a_check_times_out() {
    let server = registry(|_| Answer::stall());
    let found = bounded(client().exists(&image(&server))).await;
    let Existence::Unknown(err) = found else {
        panic!("no answer, no decision: {found:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable, "{err}");
}

const ENDLESS: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n\r\n";

#[tokio::test]
async fn an_endless_manifest_is_cut_at_the_cap() {
    let server = registry(|_| Answer::Endless(ENDLESS.to_string()));
    let err = bounded(client().get_manifest(&image(&server)))
        .await
        .expect_err("endless");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    assert!(
        err.message().contains("the manifest is larger than 4 MiB"),
        "{err}"
    );
    // and one announced as too large is not read at all
    let server = registry(|_| {
        Answer::SendAndStall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n".to_vec())
    });
    let err = bounded(client().get_manifest(&image(&server)))
        .await
        .expect_err("too large");
    assert!(
        err.message().contains("the manifest is larger than 4 MiB"),
        "{err}"
    );
}

#[tokio::test]
async fn an_endless_error_body_still_gives_the_status() {
    let server = registry(|_| Answer::Endless("HTTP/1.1 400 Bad Request\r\n\r\n".to_string()));
    let err = bounded(client().get_manifest(&image(&server)))
        .await
        .expect_err("400");
    assert!(err.message().contains("400"), "{err}");
}

#[tokio::test]
async fn an_endless_token_answer_is_cut_at_the_cap() {
    let server = FakeServer::tcp(|request| {
        if request.target.starts_with("/token") {
            return Answer::Endless("HTTP/1.1 200 OK\r\n\r\n".to_string());
        }
        let realm = format!(
            "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"fake\"\r\n",
            request.header("host").unwrap_or_default()
        );
        Answer::reply("401 Unauthorized", &realm, b"")
    });
    let found = bounded(client().exists(&image(&server))).await;
    let Existence::Unknown(err) = found else {
        panic!("no token, no decision: {found:?}");
    };
    assert!(
        err.message()
            .contains("the token answer is larger than 1 MiB"),
        "{err}"
    );
}

#[tokio::test]
async fn a_config_blob_read_into_memory_is_capped() {
    let server = registry(|_| Answer::Endless("HTTP/1.1 200 OK\r\n\r\n".to_string()));
    let (digest, _) = describe_bytes(b"config");
    let blob = bounded(client().get_blob(&image(&server), &digest))
        .await
        .expect("the answer starts");
    let err = bounded(blob.into_bytes()).await.expect_err("endless");
    assert!(err.message().contains("larger than the 16 MiB"), "{err}");
}
