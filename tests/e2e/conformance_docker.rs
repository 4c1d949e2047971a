//! The engine conformance suite against the real dockerd of `scripts/env/up.sh` (BuildKit, as berth picks it).

use berth_backend_docker::{DockerEngine, DockerOptions};
use berth_tests::env::TestEnv;

async fn docker(env: &'static TestEnv) -> berth_core::Result<DockerEngine> {
    DockerEngine::connect(DockerOptions {
        host: Some(format!("unix://{}", env.docker_socket.display())),
        ..DockerOptions::default()
    })
    .await
}

berth_tests::engine_conformance!(docker);
