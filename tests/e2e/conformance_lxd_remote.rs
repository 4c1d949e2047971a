//! The engine conformance suite against the remote LXD server of `scripts/env/remote-lxd.sh`, reached over HTTPS
//! with lxc's client certificate: every step's layer read through LXD's export API, mounts as pushed files and
//! custom storage volumes (`crates/backend-lxd/src/build/pushed.rs`), nothing read from the server's folders.

use berth_backend_lxd::{LxdEngine, LxdOptions};
use berth_tests::env::TestEnv;
use berth_tests::lxd_remote::{remote_name, trusted};

async fn lxd_remote(_env: &'static TestEnv) -> berth_core::Result<LxdEngine> {
    LxdEngine::connect(LxdOptions {
        remote: Some(remote_name()),
        lxd_conf: Some(trusted()),
        ..LxdOptions::default()
    })
    .await
}

berth_tests::engine_conformance!(lxd_remote);
