//! The engine conformance suite against the rootless Podman API service of `scripts/env/up.sh` (user
//! `berth-rootless`; the tests run as root, which may use that user's socket).

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_tests::env::TestEnv;

async fn podman_rootless(env: &'static TestEnv) -> berth_core::Result<PodmanEngine> {
    let engine = PodmanEngine::connect(PodmanOptions {
        socket: Some(format!("unix://{}", env.podman_rootless_socket.display())),
        ..PodmanOptions::default()
    })
    .await?;
    use berth_core::engine::ContainerEngine as _;
    let info = engine.info().await?;
    assert!(
        info.capabilities.rootless,
        "{} is not a rootless service: {info:?}",
        env.podman_rootless_socket.display()
    );
    Ok(engine)
}

berth_tests::engine_conformance!(podman_rootless);
