//! The engine conformance suite against the remote host's rootless Podman service (user `berth-remote`),
//! reached over SSH as that user.

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_tests::env::TestEnv;
use berth_tests::remote::RemoteEnv;

async fn podman_ssh_rootless(_env: &'static TestEnv) -> berth_core::Result<PodmanEngine> {
    let remote = RemoteEnv::get();
    let engine = PodmanEngine::connect(PodmanOptions {
        socket: Some(remote.podman_rootless_url()),
        ssh_key: Some(remote.ssh_key.display().to_string()),
        ..PodmanOptions::default()
    })
    .await?;
    use berth_core::engine::ContainerEngine as _;
    let info = engine.info().await?;
    assert!(info.capabilities.rootless, "{info:?}");
    Ok(engine)
}

berth_tests::engine_conformance!(podman_ssh_rootless);
