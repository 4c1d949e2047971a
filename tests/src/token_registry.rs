//! The registry shaped like GHCR and Docker Hub that `scripts/env/token-registry.sh` starts (TLS from a private
//! CA the machine trusts, Docker's token auth, anonymous pulls of `public/...` only, 10-second tokens for one
//! user), and a slow link to it, so that a push outlives its tokens.
//!
//! Its variables (`BERTH_TEST_TOKEN_REGISTRY...`) are read as [`crate::env`] reads the others: from the process,
//! else from the env file; a missing one fails the test with what to run.

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use berth_core::engine::Secret;

use crate::env::required_settings;

/// The token registry's variables.
#[derive(Debug)]
pub struct TokenRegistry {
    /// `10.203.0.1:5443`.
    pub host: String,
    /// The token issuer's URL.
    pub realm: String,
    /// A user whose tokens live five minutes.
    pub user: String,
    /// A user with the same password whose tokens live [`TokenRegistry::short_lifetime`].
    pub short_user: String,
    /// How long `short_user`'s tokens live.
    pub short_lifetime: Duration,
    /// A user with the same password whose tokens also live [`TokenRegistry::short_lifetime`], while the token
    /// server's answer says five minutes: a client survives them only by re-authenticating on a 401.
    pub stale_user: String,
    password: Secret,
    /// The CA that signed the registry's certificate (PEM), trusted by the machine.
    pub ca: PathBuf,
    /// busybox in a private repository.
    pub busybox_image: String,
    /// busybox in a public repository (`public/...`): anonymous pulls allowed.
    pub public_busybox_image: String,
    /// The python fixture in a private repository: the base of the tests' builds.
    pub python_image: String,
}

impl TokenRegistry {
    /// The variables, read once per process; panics (the test fails) saying to run `scripts/env/up.sh` when
    /// one is missing.
    pub fn get() -> &'static TokenRegistry {
        static REGISTRY: OnceLock<TokenRegistry> = OnceLock::new();
        REGISTRY.get_or_init(TokenRegistry::load)
    }

    fn load() -> TokenRegistry {
        let var = required_settings("the token registry (scripts/env/token-registry.sh)");
        let password_file = var("BERTH_TEST_TOKEN_REGISTRY_PASSWORD_FILE");
        let password = std::fs::read_to_string(&password_file)
            .unwrap_or_else(|e| panic!("run scripts/env/up.sh first ({password_file}: {e})"));
        let lifetime = var("BERTH_TEST_TOKEN_REGISTRY_SHORT_LIFETIME");
        TokenRegistry {
            host: var("BERTH_TEST_TOKEN_REGISTRY"),
            realm: var("BERTH_TEST_TOKEN_REGISTRY_REALM"),
            user: var("BERTH_TEST_TOKEN_REGISTRY_USER"),
            short_user: var("BERTH_TEST_TOKEN_REGISTRY_SHORT_USER"),
            stale_user: var("BERTH_TEST_TOKEN_REGISTRY_STALE_USER"),
            short_lifetime: Duration::from_secs(lifetime.parse().unwrap_or_else(|e| {
                panic!("BERTH_TEST_TOKEN_REGISTRY_SHORT_LIFETIME={lifetime}: {e}")
            })),
            password: Secret::new(password.trim()),
            ca: var("BERTH_TEST_TOKEN_REGISTRY_CA").into(),
            busybox_image: var("BERTH_TEST_TOKEN_REGISTRY_BUSYBOX_IMAGE"),
            public_busybox_image: var("BERTH_TEST_TOKEN_REGISTRY_PUBLIC_BUSYBOX_IMAGE"),
            python_image: var("BERTH_TEST_TOKEN_REGISTRY_PYTHON_IMAGE"),
        }
    }

    /// The password of both users.
    pub fn password(&self) -> &Secret {
        &self.password
    }

    /// `user:password` for `user`, for tools such as `skopeo --creds`.
    pub fn creds_arg(&self, user: &str) -> String {
        format!("{user}:{}", self.password.expose())
    }
}

/// A TCP relay in front of a registry whose uploads (client to registry) are slowed to a rate, so that a push of
/// a few megabytes takes longer than a short-lived token. TLS passes through untouched: the registry's
/// certificate names its IP address, which the relay shares, and the registry builds upload locations from the
/// `Host` header, so they name the relay. Stops when dropped.
pub struct SlowLink {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    uploaded: Arc<AtomicU64>,
}

impl SlowLink {
    /// A relay on an ephemeral port of `upstream`'s IP address, passing at most `bytes_per_second` upward.
    pub fn start(upstream: &str, bytes_per_second: u64) -> SlowLink {
        let target: SocketAddr = upstream
            .parse()
            .unwrap_or_else(|e| panic!("{upstream} is not IP:PORT: {e}"));
        let listener = TcpListener::bind((target.ip(), 0)).expect("a port for the slow link");
        let addr = listener.local_addr().expect("its address");
        let stop = Arc::new(AtomicBool::new(false));
        let uploaded = Arc::new(AtomicU64::new(0));
        let (stopped, counted) = (stop.clone(), uploaded.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                if stopped.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(client) = client else { continue };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                let (client_read, server_write) = (
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                );
                let counted = counted.clone();
                std::thread::spawn(move || {
                    relay(client_read, server_write, Some(bytes_per_second), &counted)
                });
                let unused = Arc::new(AtomicU64::new(0));
                std::thread::spawn(move || relay(server, client, None, &unused));
            }
        });
        SlowLink {
            addr,
            stop,
            uploaded,
        }
    }

    /// `IP:PORT` of the relay: the registry host to give berth.
    pub fn host(&self) -> String {
        self.addr.to_string()
    }

    /// Bytes passed from clients to the registry so far.
    pub fn uploaded(&self) -> u64 {
        self.uploaded.load(Ordering::SeqCst)
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the accepting thread so that it sees the flag
        let _ = TcpStream::connect(self.addr);
    }
}

/// Copies `from` to `to` until either side closes, at most `rate` bytes a second when given.
fn relay(mut from: TcpStream, mut to: TcpStream, rate: Option<u64>, counted: &AtomicU64) {
    let mut buffer = [0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if to.write_all(&buffer[..n]).is_err() {
            break;
        }
        counted.fetch_add(n as u64, Ordering::SeqCst);
        if let Some(rate) = rate {
            std::thread::sleep(Duration::from_secs_f64(n as f64 / rate.max(1) as f64));
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
