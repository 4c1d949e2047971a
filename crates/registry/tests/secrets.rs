//! No secret reaches an error message or a Debug print: not the registry password, and not the signed query
//! string of an upload location or a redirect to object storage. A fake registry hands uploads and downloads
//! to a fake object store on another port, which cuts every transfer short so that the HTTP library's errors
//! (which name the URL they were for) reach berth's messages.

use std::collections::HashMap;

use berth_core::reference::ImageRef;
use berth_registry::{
    bytes_stream, CredentialResolver, RegistryClient, RegistryOptions, RetryPolicy,
};
use berth_tests::fake_http::{Answer, FakeServer};
use futures_util::StreamExt as _;

const PASSWORD: &str = "pw-hunter2";
const SIGNATURE: &str = "X-Amz-Signature=sig-0b5e55ed";
const BASIC: &str = "Basic dXNlcjpwdy1odW50ZXIy"; // user:pw-hunter2

/// A registry that wants basic auth and sends blob transfers to `store`, with signed URLs.
fn registry(store: String) -> FakeServer {
    FakeServer::tcp(move |request| {
        if request.header("authorization") != Some(BASIC) {
            return Answer::reply(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"fake\"\r\n",
                b"",
            );
        }
        let signed = |path: &str| {
            format!("Location: http://{store}{path}?X-Amz-Credential=AKIA%2F1&{SIGNATURE}\r\n")
        };
        match (request.method.as_str(), request.target.as_str()) {
            ("GET", "/v2/") => Answer::reply("200 OK", "", b""),
            ("POST", t) if t.starts_with("/v2/team/app/blobs/uploads/") => {
                Answer::reply("202 Accepted", &signed("/upload/1"), b"")
            }
            // an upload location on the registry, whose PUT is redirected to the store
            ("POST", t) if t.starts_with("/v2/team/redirected/blobs/uploads/") => Answer::reply(
                "202 Accepted",
                "Location: /v2/team/redirected/blobs/uploads/u1\r\n",
                b"",
            ),
            ("PUT", t) if t.starts_with("/v2/team/redirected/blobs/uploads/u1") => {
                Answer::reply("307 Temporary Redirect", &signed("/upload/2"), b"")
            }
            ("GET", t) if t.starts_with("/v2/team/app/blobs/") => {
                Answer::reply("307 Temporary Redirect", &signed("/blob/1"), b"")
            }
            _ => Answer::reply("404 Not Found", "", b""),
        }
    })
}

/// Object storage that cuts every transfer short: the upload gets no answer, the download half its body.
fn store() -> FakeServer {
    FakeServer::tcp(|request| match request.method.as_str() {
        "GET" => {
            Answer::SendAndClose(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nabc".to_vec())
        }
        _ => Answer::SendAndClose(Vec::new()),
    })
}

fn client() -> RegistryClient {
    let vars = HashMap::from([
        ("BERTH_REGISTRY_USERNAME".to_string(), "user".to_string()),
        ("BERTH_REGISTRY_PASSWORD".to_string(), PASSWORD.to_string()),
    ]);
    RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(vars),
        retry: RetryPolicy::never(),
        ..RegistryOptions::default()
    })
    .expect("client")
}

fn assert_clean(what: &str, printed: &str) {
    for secret in [PASSWORD, "sig-0b5e55ed", "AKIA", BASIC] {
        assert!(
            !printed.contains(secret),
            "{what} shows `{secret}`: {printed}"
        );
    }
}

#[tokio::test]
async fn signed_upload_and_download_urls_stay_out_of_errors() {
    let store = store();
    let registry = registry(store.addr.clone());
    let client = client();
    let image = ImageRef::parse(&format!("{}/team/app:1", registry.addr)).expect("reference");
    let (digest, size) = berth_registry::describe_bytes(b"layer");

    let err = client
        .push_blob(&image, &digest, size, bytes_stream(&b"layer"[..]))
        .await
        .expect_err("the store cuts the upload");
    let printed = format!("{err}\n{err:?}");
    assert!(printed.contains("push blob"), "{printed}");
    assert_clean("a failed upload", &printed);

    let redirected =
        ImageRef::parse(&format!("{}/team/redirected:1", registry.addr)).expect("reference");
    let err = client
        .push_blob(&redirected, &digest, size, bytes_stream(&b"layer"[..]))
        .await
        .expect_err("the redirected upload fails");
    assert_clean("a redirected upload", &format!("{err}\n{err:?}"));

    let mut blob = client
        .get_blob(&image, &digest)
        .await
        .expect("redirect followed");
    let mut failure = None;
    while let Some(item) = blob.next().await {
        if let Err(e) = item {
            failure = Some(e);
            break;
        }
    }
    let err = failure.expect("the store cuts the download");
    let printed = format!("{err}\n{err:?}");
    assert!(printed.contains("download interrupted"), "{printed}");
    assert_clean("a cut download", &printed);

    // the uploads and downloads did reach the store, without the registry's credentials
    let seen = store.requests();
    assert!(
        seen.iter()
            .any(|r| r.method == "PUT" && r.target.contains(SIGNATURE)),
        "{seen:?}"
    );
    assert!(seen.iter().any(|r| r.method == "GET"), "{seen:?}");
    assert!(
        seen.iter().all(|r| r.header("authorization").is_none()),
        "{seen:?}"
    );

    assert_clean("the client's Debug", &format!("{client:?} {client:#?}"));
    assert_clean("the options' Debug", &format!("{:?}", client.options()));
}
