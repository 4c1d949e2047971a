//! The engine conformance suite against the rootful Podman API service of `scripts/env/up.sh`.

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_tests::env::TestEnv;

async fn podman(env: &'static TestEnv) -> berth_core::Result<PodmanEngine> {
    PodmanEngine::connect(PodmanOptions {
        socket: Some(format!("unix://{}", env.podman_socket.display())),
        ..PodmanOptions::default()
    })
    .await
}

berth_tests::engine_conformance!(podman);
