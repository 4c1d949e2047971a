//! The engine conformance suite against the remote dockerd of `scripts/env/remote-docker.sh`, over TCP with TLS
//! (the network namespace `berth-remote`, its private CA's client certificates): every behaviour berth relies on
//! locally, through the network.

use std::path::PathBuf;

use berth_backend_docker::{DockerEngine, DockerOptions, TlsFiles};
use berth_tests::env::TestEnv;

async fn docker_remote(_env: &'static TestEnv) -> berth_core::Result<DockerEngine> {
    let var = |name: &str| {
        std::env::var(name).unwrap_or_else(|_| {
            panic!(
                "{name} is not set: run scripts/env/up.sh, then `source /var/lib/berth-env/env.sh`"
            )
        })
    };
    let certs = PathBuf::from(var("BERTH_TEST_REMOTE_DOCKER_CERT_PATH"));
    DockerEngine::connect(DockerOptions {
        host: Some(var("BERTH_TEST_REMOTE_DOCKER_HOST")),
        tls: Some(TlsFiles::in_dir(&certs)),
        ..DockerOptions::default()
    })
    .await
}

berth_tests::engine_conformance!(docker_remote);
