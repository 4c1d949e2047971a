//! A token renewed after a 401 is the one the next requests send. A registry may end tokens before the lifetime
//! its token server gave them (revoked, or a clock ahead), and its challenge may list a scope's actions in any
//! order (docker-registry's varies between requests: `push,pull` as often as `pull,push`). The renewed token
//! must replace the dead one for the scope a request asks for, or an upload's `PUT` (which cannot be sent again
//! once its body has gone) carries the dead token and fails.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use berth_core::reference::ImageRef;
use berth_registry::{
    bytes_stream, sha256_digest, CredentialResolver, RegistryClient, RegistryOptions, RetryPolicy,
};
use berth_tests::fake_http::{Answer, FakeServer, Request};

/// Tokens the fake token server gave, and the oldest one the fake registry still takes.
#[derive(Default)]
struct Tokens {
    issued: AtomicU32,
    oldest_alive: AtomicU32,
}

impl Tokens {
    /// Whether `authorization` carries a token that still works.
    fn alive(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.strip_prefix("Bearer tok-"))
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n >= self.oldest_alive.load(Ordering::SeqCst))
    }

    /// Ends every token given so far.
    fn end_all(&self) {
        let next = self.issued.load(Ordering::SeqCst) + 1;
        self.oldest_alive.store(next, Ordering::SeqCst);
    }
}

/// A registry whose tokens claim five minutes but die when [`Tokens::end_all`] says (its challenges list
/// `push,pull`, the other order from berth's own scopes), its tokens, and an image reference on it.
fn registry() -> (Arc<Tokens>, FakeServer, ImageRef) {
    let tokens = Arc::new(Tokens::default());
    let server = server(tokens.clone());
    let image = ImageRef::parse(&format!("{}/app:1", server.addr)).expect("reference");
    (tokens, server, image)
}

fn server(tokens: Arc<Tokens>) -> FakeServer {
    let addr: Arc<OnceLock<String>> = Arc::default();
    let realm = addr.clone();
    let server = FakeServer::tcp(move |request: &Request| {
        if request.target.starts_with("/token") {
            let n = tokens.issued.fetch_add(1, Ordering::SeqCst) + 1;
            let body = format!(r#"{{"token":"tok-{n}","expires_in":300}}"#);
            return Answer::reply("200 OK", "", body.as_bytes());
        }
        if request.target == "/v2/" {
            return Answer::reply("200 OK", "", b"");
        }
        if !tokens.alive(request.header("authorization")) {
            let challenge = format!(
                "WWW-Authenticate: Bearer realm=\"http://{}/token\",service=\"fake\",\
                 scope=\"repository:app:push,pull\"\r\n",
                realm.get().expect("address")
            );
            return Answer::reply("401 Unauthorized", &challenge, b"");
        }
        match request.method.as_str() {
            "POST" => Answer::reply(
                "202 Accepted",
                "Location: /v2/app/blobs/uploads/u1\r\n",
                b"",
            ),
            "PUT" => Answer::reply("201 Created", "", b""),
            _ => Answer::reply("404 Not Found", "", b""),
        }
    });
    addr.set(server.addr.clone()).expect("set once");
    server
}

fn client() -> RegistryClient {
    let mut vars = std::collections::HashMap::new();
    vars.insert("BERTH_REGISTRY_USERNAME".to_string(), "user".to_string());
    vars.insert("BERTH_REGISTRY_PASSWORD".to_string(), "pass".to_string());
    RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(vars),
        retry: RetryPolicy::never(),
        ..RegistryOptions::default()
    })
    .expect("client")
}

/// The `Authorization` of each upload `PUT` the server saw.
fn put_tokens(server: &FakeServer) -> Vec<String> {
    server
        .requests()
        .iter()
        .filter(|r| r.method == "PUT")
        .map(|r| r.header("authorization").unwrap_or("none").to_string())
        .collect()
}

#[tokio::test]
async fn an_upload_after_its_start_renewed_a_dead_token_sends_the_new_one() {
    let (tokens, server, image) = registry();
    let client = client();
    let push = |data: &'static [u8]| {
        let (client, image) = (&client, &image);
        async move {
            let digest = sha256_digest(data);
            client
                .push_blob(image, &digest, data.len() as u64, bytes_stream(data))
                .await
        }
    };

    push(b"first layer").await.expect("the first upload");
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        1,
        "the token the upload's start got serves its PUT too"
    );
    tokens.end_all();
    push(b"second layer")
        .await
        .expect("the upload after its token died: its start renews it, its PUT sends the new one");
    assert_eq!(put_tokens(&server), ["Bearer tok-1", "Bearer tok-2"]);
    assert_eq!(tokens.issued.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_token_renewed_for_more_than_a_check_asked_serves_the_next_checks() {
    // the server lives as long as its binding
    let (tokens, _server, image) = registry();
    let client = client();
    let digest = sha256_digest(b"absent");
    // a check asks for `pull`; this registry's challenge asks for `push,pull`
    for _ in 0..2 {
        assert!(!client.blob_exists(&image, &digest).await.expect("a check"));
    }
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        1,
        "the token the first check's challenge got serves the second check"
    );
    tokens.end_all();
    for _ in 0..3 {
        assert!(!client
            .blob_exists(&image, &digest)
            .await
            .expect("a check after the token died"));
    }
    assert_eq!(
        tokens.issued.load(Ordering::SeqCst),
        2,
        "one token at first, one renewal after the first died: the renewed token, fetched for the challenge's \
         wider scope, replaced the dead one the checks send"
    );
}
