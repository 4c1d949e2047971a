//! The engine conformance suite against the containerd of `scripts/env/up.sh` (berth's native builder). What only
//! this backend can show (no task, container, active snapshot or lease outlives a failed or cancelled build;
//! reproducible COPY layers) is tested in `crates/backend-containerd/tests`.

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_tests::env::TestEnv;

async fn containerd(env: &'static TestEnv) -> berth_core::Result<ContainerdEngine> {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        ..ContainerdOptions::default()
    })
    .await
}

berth_tests::engine_conformance!(containerd);
