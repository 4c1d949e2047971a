//! The engine conformance suite against Docker over SSH: `DOCKER_HOST=ssh://root@10.203.0.2` as the docker
//! CLI reads it, every connection `docker system dial-stdio` on the remote host over one SSH session (root's
//! ssh configuration for that host, written by `scripts/env/remote-ssh.sh`, names the key and the host key).
//! The daemon there is /var/run/docker.sock, this machine's dockerd; what crosses the network is the API.

use berth_backend_docker::{DockerEngine, DockerOptions};
use berth_tests::env::TestEnv;
use berth_tests::remote::RemoteEnv;

async fn docker_ssh(_env: &'static TestEnv) -> berth_core::Result<DockerEngine> {
    let engine = DockerEngine::connect(DockerOptions {
        host: Some(RemoteEnv::get().docker_url()),
        ..DockerOptions::default()
    })
    .await?;
    use berth_core::engine::ContainerEngine as _;
    let info = engine.info().await?;
    assert!(info.endpoint.starts_with("ssh://root@"), "{info:?}");
    Ok(engine)
}

berth_tests::engine_conformance!(docker_ssh);
