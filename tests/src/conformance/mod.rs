//! The engine conformance suite: behaviours every [`ContainerEngine`] must show against a real daemon and the real
//! authenticated registry of `scripts/env/up.sh`, written once as `pub async fn name(&dyn ContainerEngine,
//! &TestEnv)` (object_store's `integration.rs` style) and run for each backend by [`engine_conformance!`](crate::engine_conformance).
//!
//! A backend hooks in with one test file (add a `[[test]]` entry for it in `tests/Cargo.toml`):
//!
//! ```text
//! //! The engine conformance suite against dockerd.
//! use berth_backend_docker::{DockerEngine, DockerOptions};
//! use berth_tests::env::TestEnv;
//!
//! async fn docker(env: &'static TestEnv) -> berth_core::Result<DockerEngine> {
//!     DockerEngine::connect(DockerOptions {
//!         host: Some(format!("unix://{}", env.docker_socket.display())),
//!         ..DockerOptions::default()
//!     })
//!     .await
//! }
//!
//! berth_tests::engine_conformance!(docker);
//! ```
//!
//! which generates one `#[tokio::test]` per behaviour, named after it (`cargo test -p berth-tests --test
//! conformance_docker secret` runs one). Behaviours build plans directly on the busybox fixture, name everything
//! uniquely per run (`REGISTRY/conformance/<what>-<pid>-<nanos>-<n>:<tag>`) and remove what they create, locally
//! and in the registry, even when they fail. A missing environment fails with "run scripts/env/up.sh first"; a
//! capability an engine does not declare is checked as an [`ErrorKind::Unsupported`](berth_core::ErrorKind)
//! refusal; nothing is skipped.

use std::future::Future;

pub use berth_core::engine::ContainerEngine;

use crate::env::TestEnv;

mod build;
mod images;
mod isolation;
pub mod layered;
mod layers;
mod mounts;
pub mod registry;
pub mod support;

pub use build::{
    build_applies_config, build_from_missing_base_fails, context_files_and_env_land,
    failing_run_is_build_failed, rebuild_reuses_cache,
};
pub use images::{info_describes_engine, inspect_missing_is_not_found, tag_inspect_remove};
pub use isolation::run_isolation_is_as_declared;
pub use layers::{run_layers_carry_deletions, run_layers_carry_renames_and_mode_changes};
pub use mounts::{
    cache_mount_persists_between_builds, cancelled_build_leaves_engine_usable,
    concurrent_builds_share_a_cache, image_and_context_mounts, secret_mount_reaches_step_not_image,
};
pub use registry::{
    pull_missing_is_not_found, pull_with_wrong_password_is_unauthorized, push_pull_round_trip,
    push_with_wrong_password_is_unauthorized,
};

/// Connects with a backend's constructor, panicking with what to do when the engine is not there.
pub async fn connect_with<F, Fut, E>(connect: F, env: &'static TestEnv) -> Box<dyn ContainerEngine>
where
    F: FnOnce(&'static TestEnv) -> Fut,
    Fut: Future<Output = berth_core::Result<E>>,
    E: ContainerEngine + 'static,
{
    match connect(env).await {
        Ok(engine) => Box::new(engine),
        Err(e) => panic!(
            "cannot connect to the engine under test: {e}\n  run scripts/env/up.sh first (as root): it starts \
             containerd, dockerd, the Podman services and the registry"
        ),
    }
}

/// Generates one `#[tokio::test]` per conformance behaviour for an engine.
///
/// `$connect` is an async function (or closure) taking `&'static TestEnv` and returning
/// `berth_core::Result<impl ContainerEngine>`. The calling crate needs `tokio` (with `macros` and
/// `rt-multi-thread`); the tests use the multi-thread runtime, which the cleanup guard needs.
#[macro_export]
macro_rules! engine_conformance {
    ($connect:expr) => {
        $crate::engine_conformance!(@tests $connect;
            info_describes_engine,
            build_applies_config,
            rebuild_reuses_cache,
            context_files_and_env_land,
            failing_run_is_build_failed,
            secret_mount_reaches_step_not_image,
            cache_mount_persists_between_builds,
            image_and_context_mounts,
            push_pull_round_trip,
            tag_inspect_remove,
            inspect_missing_is_not_found,
            build_from_missing_base_fails,
            push_with_wrong_password_is_unauthorized,
            pull_with_wrong_password_is_unauthorized,
            pull_missing_is_not_found,
            cancelled_build_leaves_engine_usable,
            run_layers_carry_deletions,
            concurrent_builds_share_a_cache,
            run_isolation_is_as_declared,
            run_layers_carry_renames_and_mode_changes,
        );
    };
    (@tests $connect:expr; $($behaviour:ident),+ $(,)?) => {
        $(
            #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $behaviour() {
                let Some(env) = $crate::env::TestEnv::for_engine(stringify!($connect)) else {
                    return;
                };
                let engine = $crate::conformance::connect_with($connect, env).await;
                $crate::conformance::$behaviour(&*engine, env).await;
            }
        )+
    };
}
