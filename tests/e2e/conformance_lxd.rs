//! The engine conformance suite against the LXD of `scripts/env/up.sh` (berth's own builder in LXD containers).
//! What only this backend can show (no container or build folder outlives a failed, cancelled or killed build)
//! is tested in `crates/backend-lxd/tests`.

use berth_backend_lxd::{LxdEngine, LxdOptions};
use berth_tests::env::TestEnv;

async fn lxd(_env: &'static TestEnv) -> berth_core::Result<LxdEngine> {
    LxdEngine::connect(LxdOptions::default()).await
}

berth_tests::engine_conformance!(lxd);
