//! [`send_blobs`] against a fake registry ([`berth_tests::fake_http`], one thread per connection): layers go up
//! several at once but never more than [`BLOBS_AT_ONCE`], the config after every layer, and a failed upload
//! stops the push before the config.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::reference::ImageRef;
use berth_registry::{
    bytes_stream, describe_bytes, send_blobs, CredentialResolver, ImageBlob, RegistryClient,
    RegistryOptions, RetryPolicy, BLOBS_AT_ONCE,
};
use berth_tests::fake_http::{Answer, FakeServer, Request};

fn client() -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default()),
        retry: RetryPolicy::never(),
        ..RegistryOptions::default()
    })
    .expect("client")
}

/// A blob and its bytes.
type Held = (ImageBlob, Vec<u8>);

/// Distinct blobs: the layers' bytes and the config's.
fn blobs(layers: usize) -> (Vec<Held>, Held) {
    let blob = |bytes: Vec<u8>| {
        let (digest, size) = describe_bytes(&bytes);
        (ImageBlob { digest, size }, bytes)
    };
    let layers = (0..layers)
        .map(|i| blob(format!("layer {i}").repeat(1000).into_bytes()))
        .collect();
    (layers, blob(b"{\"config\":1}".to_vec()))
}

/// Uploads each of `layers` and `config` with [`RegistryClient::push_blob`] through [`send_blobs`].
async fn push(server: &FakeServer, layers: &[Held], config: &Held) -> berth_core::Result<()> {
    let client = client();
    let image = ImageRef::parse(&format!("{}/team/app:1", server.addr)).expect("reference");
    let all: Vec<Held> = layers.iter().chain([config]).cloned().collect();
    let layer_blobs: Vec<ImageBlob> = layers.iter().map(|(b, _)| b.clone()).collect();
    let work = send_blobs(&layer_blobs, &config.0, |blob| {
        let bytes = all
            .iter()
            .find(|(b, _)| *b == blob)
            .map(|(_, bytes)| bytes.clone())
            .unwrap_or_default();
        let (client, image) = (&client, &image);
        async move {
            client
                .push_blob(image, &blob.digest, blob.size, bytes_stream(bytes))
                .await
        }
    });
    tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .expect("hung")
}

/// The digest a blob `PUT` completes.
fn put_digest(request: &Request) -> Option<String> {
    let (_, query) = request.target.split_once("digest=")?;
    Some(query.split('&').next()?.replace("%3A", ":"))
}

fn uploads(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .filter_map(put_digest)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn layers_go_up_several_at_once_and_the_config_last() {
    let in_flight = Arc::new(AtomicUsize::new(0));
    let most = Arc::new(Mutex::new(0usize));
    let (flight, peak) = (in_flight.clone(), most.clone());
    let server = FakeServer::tcp(move |request| match request.method.as_str() {
        "GET" => Answer::reply("200 OK", "", b""),
        "POST" => Answer::reply("202 Accepted", "Location: /upload/x\r\n", b""),
        "PUT" => {
            let now = flight.fetch_add(1, Ordering::SeqCst) + 1;
            {
                let mut peak = peak.lock().unwrap_or_else(|p| p.into_inner());
                *peak = (*peak).max(now);
            }
            // hold each upload's answer until a second one arrives (or a while has passed, so a client sending
            // one at a time is only slowed, never stuck): overlapping uploads show up in the peak
            let wait = Instant::now();
            while flight.load(Ordering::SeqCst) < 2 && wait.elapsed() < Duration::from_secs(2) {
                std::thread::sleep(Duration::from_millis(5));
            }
            std::thread::sleep(Duration::from_millis(50));
            flight.fetch_sub(1, Ordering::SeqCst);
            Answer::reply("201 Created", "", b"")
        }
        _ => Answer::reply("404 Not Found", "", b""),
    });
    let (layers, config) = blobs(9);
    push(&server, &layers, &config)
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    let peak = *most.lock().unwrap_or_else(|p| p.into_inner());
    assert!(
        (2..=BLOBS_AT_ONCE).contains(&peak),
        "{peak} uploads at once, expected 2 to {BLOBS_AT_ONCE}"
    );
    let done = uploads(&server);
    assert_eq!(done.len(), layers.len() + 1, "{done:?}");
    assert_eq!(
        done.last(),
        Some(&config.0.digest),
        "the config is not last"
    );
    for (layer, _) in &layers {
        assert!(
            done.contains(&layer.digest),
            "{} never uploaded",
            layer.digest
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_upload_stops_the_push_before_the_config() {
    let (layers, config) = blobs(6);
    let refused = layers[2].0.digest.clone();
    let server = FakeServer::tcp(move |request| match request.method.as_str() {
        "GET" => Answer::reply("200 OK", "", b""),
        "POST" => Answer::reply("202 Accepted", "Location: /upload/x\r\n", b""),
        "PUT" if put_digest(request).as_deref() == Some(refused.as_str()) => Answer::reply(
            "400 Bad Request",
            "Content-Type: application/json\r\n",
            br#"{"errors":[{"code":"DIGEST_INVALID","message":"digest did not match"}]}"#,
        ),
        "PUT" => Answer::reply("201 Created", "", b""),
        _ => Answer::reply("404 Not Found", "", b""),
    });
    let err = push(&server, &layers, &config)
        .await
        .expect_err("a refused upload failed nothing");
    assert!(err.message().contains("digest"), "{err}");
    let done = uploads(&server);
    assert!(
        !done.contains(&config.0.digest),
        "the config went up after a layer failed: {done:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_named_twice_goes_up_once() {
    let server = FakeServer::tcp(|request| match request.method.as_str() {
        "GET" => Answer::reply("200 OK", "", b""),
        "POST" => Answer::reply("202 Accepted", "Location: /upload/x\r\n", b""),
        "PUT" => Answer::reply("201 Created", "", b""),
        _ => Answer::reply("404 Not Found", "", b""),
    });
    let (mut layers, config) = blobs(3);
    layers.push(layers[0].clone());
    push(&server, &layers, &config)
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    let done = uploads(&server);
    assert_eq!(done.len(), 4, "{done:?}");
}
