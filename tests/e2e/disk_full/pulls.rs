//! Pulls outside a build, through [`ContainerEngine::pull`] (the CLI has no pull command; projects and tools
//! built on berth's crates call it): Docker's and Podman's into a store filled but for a little room fail as
//! `resource exhausted` naming the store and the fix, keep no image record, and work once there is room. A
//! rootless Podman service writes what it pulls to its user's temporary folder first (containers/image keeps
//! the blobs there until it commits them): that folder filled, the pull fails naming it as the user's.

use berth_core::engine::{ContainerEngine, NoProgress, TransferOptions};
use berth_core::ErrorKind;
use berth_tests::env::TestEnv;
use berth_tests::project::rootless_user;
use berth_tests::small_storage::{SmallDockerd, SmallPodman, SmallTmpfs};

/// Room left in the store: less than the Python fixture's layers.
const ROOM: u64 = 24 << 20;

/// Pulls the Python fixture into `engine` whose store (or temporary folder) is `disk`: with [`ROOM`] left it
/// fails naming `place`, and leaves no image; with the filler removed it works.
async fn pull_fails_when_full_then_works(
    engine: &dyn ContainerEngine,
    env: &TestEnv,
    disk: &SmallTmpfs,
    place: &str,
) {
    let options = TransferOptions {
        credentials: Some(env.credentials()),
        insecure: true,
    };
    let filler = disk.fill_leaving(ROOM);
    let failed = engine
        .pull(&env.python_image, &options, &NoProgress)
        .await
        .expect_err("the base does not fit");
    assert_eq!(failed.kind(), ErrorKind::ResourceExhausted, "{failed}");
    let said = failed.to_string();
    assert!(
        said.contains("no space left in") && said.contains(place),
        "the error names {place}: {said}"
    );
    assert!(
        failed.hint().is_some_and(|h| h.starts_with("make room")),
        "and how to fix it: {said}"
    );
    let kept = engine.inspect(&env.python_image).await;
    assert!(
        kept.as_ref()
            .is_err_and(|e| e.kind() == ErrorKind::NotFound),
        "no image of the failed pull: {kept:?}"
    );
    std::fs::remove_file(&filler).expect("make room");
    engine
        .pull(&env.python_image, &options, &NoProgress)
        .await
        .expect("the pull works with room");
    engine
        .inspect(&env.python_image)
        .await
        .expect("the pulled image is there");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_podman_pull_into_a_full_store_says_so_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("podman") else {
        return;
    };
    // its temporary folder roomy: what fills is the store
    let service = SmallPodman::start_with_tmp("400m", Some("600m"));
    let engine = berth_backend_podman::PodmanEngine::connect(berth_backend_podman::PodmanOptions {
        socket: Some(service.host()),
        ..Default::default()
    })
    .await
    .expect("connect to the test's service");
    let place = format!(
        "Podman's storage (GraphRoot {})",
        service.graph_root().display()
    );
    pull_fails_when_full_then_works(&engine, env, &service.storage, &place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rootless_podman_pull_with_a_full_temporary_folder_says_so_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("podman_rootless") else {
        return;
    };
    // the rootless test user's own service; its store roomy: what fills is its TMPDIR
    let service = SmallPodman::start_as(rootless_user(), "700m", Some("300m"));
    let engine = berth_backend_podman::PodmanEngine::connect(berth_backend_podman::PodmanOptions {
        socket: Some(service.host()),
        ..Default::default()
    })
    .await
    .expect("connect to the test's service");
    let tmp = service.tmp.as_ref().expect("a TMPDIR of its own");
    let place = format!(
        "rootless Podman's temporary folder (imageCopyTmpDir {})",
        tmp.path().display()
    );
    pull_fails_when_full_then_works(&engine, env, tmp, &place).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_docker_pull_into_a_full_data_root_says_so_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("docker") else {
        return;
    };
    let daemon = SmallDockerd::start("400m", &env.containerd_address);
    let engine = berth_backend_docker::DockerEngine::connect(berth_backend_docker::DockerOptions {
        host: Some(daemon.host()),
        ..Default::default()
    })
    .await
    .expect("connect to the test's daemon");
    let place = format!(
        "Docker's storage (DockerRootDir {})",
        daemon.data_root().display()
    );
    pull_fails_when_full_then_works(&engine, env, &daemon.storage, &place).await;
}
