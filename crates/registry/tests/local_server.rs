//! The retry layer, the HTTPS-to-HTTP fallback and the bearer-token flow, against a tiny local HTTP server that
//! answers the way the test needs (unit tests of those mechanisms; registry behaviour itself is tested against
//! the real registry of `scripts/env/up.sh`, which authenticates with htpasswd, not tokens).

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use berth_core::reference::ImageRef;
use berth_core::ErrorKind;
use berth_registry::{
    sha256_digest, CredentialResolver, Existence, PublicAccess, Refusal, RegistryClient,
    RegistryOptions, RetryPolicy,
};

const DIGEST: &str = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

/// Counts what the server saw.
#[derive(Default)]
struct Seen {
    tls_hellos: AtomicU32,
    manifest_requests: AtomicU32,
    token_requests: Mutex<Vec<String>>,
}

/// How the server answers manifest requests.
#[derive(Clone, Copy)]
enum Mode {
    /// `failures` answers of 503 (with `Retry-After` seconds if given), then 200.
    Unavailable {
        failures: u32,
        retry_after: Option<u64>,
    },
    /// Harbor's answer for a missing repository: 500 with an UNKNOWN "not found" error body.
    HarborMissing,
    /// A token-authenticated registry: `/token` gives `tok` to `user:pass` (basic auth), manifests need it.
    Bearer,
    /// A token-authenticated registry with public repositories, as Docker Hub and GHCR are: `/token` gives
    /// `anon` to a request without credentials, except for `private/app` (401, as GHCR refuses), and `tok` to
    /// `user:pass`. `public/app:1` is an OCI index whose `HEAD` answer carries no digest; `gone/app` has nothing.
    PublicBearer,
}

const BEARER_BASIC: &str = "Basic dXNlcjpwYXNz"; // user:pass

/// Serves `/v2/` with 200 and manifest requests as `mode` says. Connections that start a TLS handshake are
/// closed, as a plain-HTTP registry would fail them.
fn serve(mode: Mode) -> (String, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let seen = Arc::new(Seen::default());
    let counts = seen.clone();
    let addr_for_thread = addr.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let counts = counts.clone();
            let addr = addr_for_thread.clone();
            std::thread::spawn(move || handle(stream, &counts, mode, &addr));
        }
    });
    (addr, seen)
}

fn handle(stream: TcpStream, seen: &Seen, mode: Mode, addr: &str) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    if reader
        .fill_buf()
        .map(|b| b.first() == Some(&0x16))
        .unwrap_or(true)
    {
        seen.tls_hellos.fetch_add(1, Ordering::SeqCst);
        return;
    }
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut length = 0usize;
        let mut authorization = String::new();
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            if line == "\r\n" {
                break;
            }
            let (name, value) = line.split_once(':').unwrap_or((&line, ""));
            match name.to_ascii_lowercase().as_str() {
                "content-length" => length = value.trim().parse().unwrap_or(0),
                "authorization" => authorization = value.trim().to_string(),
                _ => {}
            }
        }
        let mut body = vec![0; length];
        let _ = reader.read_exact(&mut body);
        let response = if let Mode::Bearer = mode {
            bearer_answer(&request_line, &authorization, seen, addr)
        } else if let Mode::PublicBearer = mode {
            public_answer(&request_line, &authorization, seen, addr)
        } else if request_line.contains("/manifests/") {
            let n = seen.manifest_requests.fetch_add(1, Ordering::SeqCst);
            match mode {
                Mode::Unavailable {
                    failures,
                    retry_after,
                } if n < failures => {
                    let wait = retry_after
                        .map(|s| format!("Retry-After: {s}\r\n"))
                        .unwrap_or_default();
                    format!("HTTP/1.1 503 Service Unavailable\r\n{wait}Content-Length: 0\r\n\r\n")
                }
                Mode::HarborMissing => {
                    let body = r#"{"errors":[{"code":"UNKNOWN","message":"repository flaky/app not found"}]}"#;
                    // a HEAD answer carries the length but no body
                    let sent = if request_line.starts_with("HEAD") {
                        ""
                    } else {
                        body
                    };
                    format!(
                        "HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{sent}",
                        body.len()
                    )
                }
                _ => found(),
            }
        } else {
            "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n".to_string()
        };
        if writer.write_all(response.as_bytes()).is_err() {
            return;
        }
    }
}

fn found() -> String {
    format!("HTTP/1.1 200 OK\r\nDocker-Content-Digest: {DIGEST}\r\nContent-Length: 0\r\n\r\n")
}

/// A 401 asking for a token from this server's `/token`; `scope` is `,scope="..."` or empty.
fn bearer_challenge(addr: &str, scope: &str) -> String {
    format!(
        "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Bearer realm=\"http://{addr}/token\",\
         service=\"fake-registry\"{scope}\r\nContent-Length: 0\r\n\r\n"
    )
}

/// Records a token request (`query` and the `Authorization` it came with) and answers with `token`, or 401.
fn token_answer(query: &str, authorization: &str, seen: &Seen, token: Option<&str>) -> String {
    seen.token_requests
        .lock()
        .expect("lock")
        .push(format!("{query} {authorization}"));
    match token {
        Some(token) => {
            let body = format!(r#"{{"token":"{token}","expires_in":300}}"#);
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
        }
        None => "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".to_string(),
    }
}

/// The token-authenticated registry of [`Mode::Bearer`].
fn bearer_answer(request_line: &str, authorization: &str, seen: &Seen, addr: &str) -> String {
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    let challenge = |scope: &str| bearer_challenge(addr, scope);
    if let Some(query) = path.strip_prefix("/token?") {
        let token = (authorization == BEARER_BASIC).then_some("tok");
        return token_answer(query, authorization, seen, token);
    }
    if path.contains("/manifests/") {
        seen.manifest_requests.fetch_add(1, Ordering::SeqCst);
        return if authorization == "Bearer tok" {
            found()
        } else {
            challenge(",scope=\"repository:flaky/app:pull\"")
        };
    }
    challenge("")
}

/// The index `public/app:1` serves in [`Mode::PublicBearer`].
const INDEX: &str =
    r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#;

/// The registry of [`Mode::PublicBearer`].
fn public_answer(request_line: &str, authorization: &str, seen: &Seen, addr: &str) -> String {
    let path = request_line.split(' ').nth(1).unwrap_or_default();
    let challenge = bearer_challenge(addr, "");
    if let Some(query) = path.strip_prefix("/token?") {
        let token = match authorization {
            "" if query.contains("private%2Fapp") => None,
            "" => Some("anon"),
            BEARER_BASIC => Some("tok"),
            _ => None,
        };
        return token_answer(query, authorization, seen, token);
    }
    if !path.contains("/manifests/") {
        return challenge;
    }
    seen.manifest_requests.fetch_add(1, Ordering::SeqCst);
    if !matches!(authorization, "Bearer anon" | "Bearer tok") {
        return challenge;
    }
    if path.starts_with("/v2/gone/app/") {
        let body = r#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"manifest unknown"}]}"#;
        return format!(
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        );
    }
    let body = if request_line.starts_with("HEAD") {
        ""
    } else {
        INDEX
    };
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.index.v1+json\r\nContent-Length: {}\r\n\r\n{body}",
        INDEX.len()
    )
}

fn client(attempts: u32) -> RegistryClient {
    RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default()),
        retry: RetryPolicy {
            max_attempts: attempts,
            base_delay: Duration::from_millis(20),
            ..RetryPolicy::default()
        },
        ..RegistryOptions::default()
    })
    .expect("client")
}

fn reference(addr: &str) -> ImageRef {
    ImageRef::parse(&format!("{addr}/flaky/app:1")).expect("reference")
}

#[tokio::test]
async fn two_503s_then_success_is_present_and_the_scheme_is_remembered() {
    let (addr, seen) = serve(Mode::Unavailable {
        failures: 2,
        retry_after: None,
    });
    let client = client(4);
    let found = client.exists(&reference(&addr)).await;
    assert_eq!(found.digest(), Some(DIGEST), "{found:?}");
    assert_eq!(
        seen.manifest_requests.load(Ordering::SeqCst),
        3,
        "503, 503, 200"
    );
    assert!(client.exists(&reference(&addr)).await.is_present());
    assert_eq!(
        seen.tls_hellos.load(Ordering::SeqCst),
        1,
        "HTTPS is tried once for a loopback registry, then plain HTTP is remembered"
    );
}

#[tokio::test]
async fn persistent_503s_give_up_with_the_attempt_count_and_cause() {
    let (addr, seen) = serve(Mode::Unavailable {
        failures: u32::MAX,
        retry_after: None,
    });
    let found = client(3).exists(&reference(&addr)).await;
    let Existence::Unknown(err) = found else {
        panic!("a registry that always fails cannot decide: {found:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.message().contains("3 attempts"), "{err}");
    assert!(err.message().contains("503"), "{err}");
    assert_eq!(seen.manifest_requests.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn retry_after_is_honoured() {
    let (addr, _) = serve(Mode::Unavailable {
        failures: 1,
        retry_after: Some(1),
    });
    let started = Instant::now();
    let found = client(2).exists(&reference(&addr)).await;
    assert!(found.is_present(), "{found:?}");
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn harbors_500_for_a_missing_repository_is_absent_without_retrying() {
    let (addr, seen) = serve(Mode::HarborMissing);
    let found = client(4).exists(&reference(&addr)).await;
    assert!(matches!(found, Existence::Absent), "{found:?}");
    assert_eq!(
        seen.manifest_requests.load(Ordering::SeqCst),
        2,
        "HEAD, then GET for the body; no retries"
    );
}

fn bearer_client(user: &str, password: &str) -> RegistryClient {
    let mut vars = std::collections::HashMap::new();
    vars.insert("BERTH_REGISTRY_USERNAME".to_string(), user.to_string());
    vars.insert("BERTH_REGISTRY_PASSWORD".to_string(), password.to_string());
    RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(vars),
        retry: RetryPolicy::never(),
        ..RegistryOptions::default()
    })
    .expect("client")
}

#[tokio::test]
async fn bearer_tokens_are_fetched_with_basic_auth_for_the_scope_and_cached() {
    let (addr, seen) = serve(Mode::Bearer);
    let client = bearer_client("user", "pass");
    for _ in 0..3 {
        let found = client.exists(&reference(&addr)).await;
        assert_eq!(found.digest(), Some(DIGEST), "{found:?}");
    }
    // and concurrent checks of the repository wait for that token rather than each asking for one
    let many: Vec<ImageRef> = (0..20).map(|_| reference(&addr)).collect();
    let other = bearer_client("user", "pass");
    for found in other.exists_many(&many, 20).await {
        assert_eq!(found.digest(), Some(DIGEST), "{found:?}");
    }
    let tokens = seen.token_requests.lock().expect("lock").clone();
    assert_eq!(
        tokens,
        vec![
            format!("service=fake-registry&scope=repository%3Aflaky%2Fapp%3Apull {BEARER_BASIC}");
            2
        ],
        "one token per client for the scope, sent with basic auth, then reused"
    );
    assert_eq!(seen.manifest_requests.load(Ordering::SeqCst), 23);
}

#[tokio::test]
async fn a_refused_token_request_is_unauthorized() {
    let (addr, _) = serve(Mode::Bearer);
    let found = bearer_client("user", "wrong")
        .exists(&reference(&addr))
        .await;
    let Existence::Unknown(err) = found else {
        panic!("no token, no answer: {found:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(err.message().contains("token server"), "{err}");
    assert!(err.message().contains("user `user`"), "{err}");
    assert!(!format!("{err:?}").contains("wrong"), "{err:?}");
}

#[tokio::test]
async fn anonymous_checks_take_an_anonymous_token_and_never_send_credentials() {
    let (addr, seen) = serve(Mode::PublicBearer);
    // the client has credentials for every registry in its environment: the anonymous check must not use them
    let client = bearer_client("user", "pass");
    let at = |path: &str| ImageRef::parse(&format!("{addr}/{path}")).expect("reference");
    let public = client.pull_check_anonymous(&at("public/app:1")).await;
    let index_digest = sha256_digest(INDEX.as_bytes());
    assert_eq!(
        public.digest(),
        Some(index_digest.as_str()),
        "HEAD without a digest, then GET of the index: {public:?}"
    );
    let private = client.pull_check_anonymous(&at("private/app:1")).await;
    let PublicAccess::Private { refusal, detail } = &private else {
        panic!("the token server refuses anonymous clients for private/app: {private:?}");
    };
    assert_eq!(*refusal, Refusal::Refused);
    assert!(detail.contains("anonymously"), "{detail}");
    assert!(!detail.contains("user"), "{detail}");
    let gone = client.pull_check_anonymous(&at("gone/app:1")).await;
    assert!(matches!(gone, PublicAccess::NotFound { .. }), "{gone:?}");
    let tokens = seen.token_requests.lock().expect("lock").clone();
    assert_eq!(
        tokens.len(),
        3,
        "one anonymous token per repository: {tokens:?}"
    );
    assert!(
        tokens.iter().all(|t| t.ends_with(' ')),
        "no credentials sent to the token server: {tokens:?}"
    );

    // the same client, asked as itself, still uses its credentials and does not reuse the anonymous token
    let own = client.exists(&at("public/app:1")).await;
    assert_eq!(own.digest(), Some(index_digest.as_str()), "{own:?}");
    let tokens = seen.token_requests.lock().expect("lock").clone();
    assert_eq!(
        tokens.last().map(String::as_str),
        Some(
            format!("service=fake-registry&scope=repository%3Apublic%2Fapp%3Apull {BEARER_BASIC}")
                .as_str()
        ),
        "{tokens:?}"
    );
    assert!(client.anonymous().is_anonymous() && !client.is_anonymous());
}
