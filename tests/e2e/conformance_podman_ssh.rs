//! The engine conformance suite against the remote host's rootful Podman service, reached over SSH
//! (`ssh://root@10.203.0.2/run/berth-remote/podman/podman.sock` with the key of `scripts/env/remote-ssh.sh`):
//! every build, push and pull crosses the network through one SSH session.

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_tests::env::TestEnv;
use berth_tests::remote::RemoteEnv;

async fn podman_ssh(_env: &'static TestEnv) -> berth_core::Result<PodmanEngine> {
    let remote = RemoteEnv::get();
    let engine = PodmanEngine::connect(PodmanOptions {
        socket: Some(remote.podman_url()),
        ssh_key: Some(remote.ssh_key.display().to_string()),
        ..PodmanOptions::default()
    })
    .await?;
    use berth_core::engine::ContainerEngine as _;
    let info = engine.info().await?;
    assert!(!info.capabilities.rootless, "{info:?}");
    assert!(info.endpoint.starts_with("ssh://root@"), "{info:?}");
    Ok(engine)
}

berth_tests::engine_conformance!(podman_ssh);
