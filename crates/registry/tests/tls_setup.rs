//! A client whose TLS setup fails says so on every request, instead of falling back to a default client that
//! would drop the extra CA roots and every timeout (and whose own construction panics on the same failure).
//! Its own test binary: it points the process's CA store at a broken file.

use berth_core::reference::ImageRef;
use berth_core::ErrorKind;
use berth_registry::{CredentialResolver, Existence, RegistryClient, RegistryOptions, RetryPolicy};

#[tokio::test]
async fn a_broken_system_ca_store_is_an_error_naming_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("broken.pem");
    std::fs::write(
        &broken,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .expect("write");
    // rustls-native-certs reads these instead of the system store; the only test in this binary sets them
    std::env::set_var("SSL_CERT_FILE", &broken);
    std::env::set_var("SSL_CERT_DIR", dir.path().join("none"));
    let client = RegistryClient::new(RegistryOptions {
        credentials: CredentialResolver::with_vars(Default::default()),
        retry: RetryPolicy::never(),
        ..RegistryOptions::default()
    })
    .expect("made lazily");
    let image = ImageRef::parse("127.0.0.1:9/team/app:1").expect("reference");
    let found = client.exists(&image).await;
    let Existence::Unknown(err) = found else {
        panic!("no client, no answer: {found:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(err.message().contains("cannot set up HTTPS"), "{err}");
}
