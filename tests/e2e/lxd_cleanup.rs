//! What LXD builds leave behind: nothing. A failed build and a cancelled one (its future dropped, as Ctrl-C in
//! berth does) remove their container and build folder; a berth killed mid-build (SIGKILL: nothing of berth
//! runs) leaves its container, and the next build removes it. Checked with the backend's own
//! [`LxdEngine::leftovers`], which lists berth's containers and build folders on the server.

use std::time::Duration;

use berth_backend_lxd::{LxdEngine, LxdOptions, NAME_PREFIX};
use berth_core::engine::{ContainerEngine, NoProgress};
use berth_core::ErrorKind;
use berth_tests::berth_bin;
use berth_tests::conformance::support::{build_options, image_ref, plan, run, unique, Recorder};
use berth_tests::env::TestEnv;

/// How long a leftover may take to go before the test calls it left behind: a hang guard, not a speed limit.
const GIVE_UP: Duration = Duration::from_secs(120);

async fn engine() -> LxdEngine {
    LxdEngine::connect(LxdOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach LXD: {e}\n  run scripts/env/up.sh first (as root)")
        })
}

/// berth's containers and build folders whose names carry `pid`.
async fn of_pid(engine: &LxdEngine, pid: u32) -> Vec<String> {
    let prefix = format!("{NAME_PREFIX}{pid}-");
    let found = engine.leftovers().await.expect("leftovers");
    found
        .instances
        .into_iter()
        .chain(
            found
                .folders
                .iter()
                .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())),
        )
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// Waits (up to [`GIVE_UP`]) until nothing of `pid` is left.
async fn nothing_left_of(engine: &LxdEngine, pid: u32, after: &str) {
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    loop {
        let left = of_pid(engine, pid).await;
        if left.is_empty() {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{after} left {left:?} in LXD"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_cancelled_builds_leave_nothing() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let engine = engine().await;
    let pid = std::process::id();

    let failing = plan(&env.busybox_image, vec![run("echo x > /made; exit 3")]);
    let tag = image_ref(env, "lxd-failed", "v1");
    let err = engine
        .build(&failing, &build_options(env, &tag), &NoProgress)
        .await
        .expect_err("a step exiting 3 fails the build");
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    nothing_left_of(&engine, pid, "a failed build").await;

    let long = plan(
        &env.busybox_image,
        vec![run(format!("echo {}; sleep 900", unique("cancel")))],
    );
    let tag = image_ref(env, "lxd-cancelled", "v1");
    let options = build_options(env, &tag);
    let build = engine.build(&long, &options, &NoProgress);
    let started = async {
        while of_pid(&engine, pid)
            .await
            .iter()
            .all(|n| !is_instance(&engine, n))
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        result = build => panic!("the 900-second step ended first: {result:?}"),
        _ = tokio::time::timeout(GIVE_UP, started) => {}
    }
    // the build future is dropped here: the cancellation under test
    nothing_left_of(&engine, pid, "a cancelled build").await;
}

/// Whether `name` is a container (build folders appear before their container does): its folder in LXD's.
fn is_instance(_engine: &LxdEngine, name: &str) -> bool {
    LxdOptions::default()
        .lxd_dir()
        .join("containers")
        .join(name)
        .exists()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_builds_container_goes_with_the_next_build() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let engine = engine().await;
    let project = tempfile::tempdir().expect("project");
    let spec = project.path().join("spec.yaml");
    std::fs::write(
        &spec,
        format!(
            "name: {}\nregistry: {}/berth-e2e\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             commands: [\"sleep 900\"]\nbuilder_config: {{uv_image: \"{}\"}}\n\
             builder_options: {{install_flytekit: false}}\n",
            unique("lxd-killed"),
            env.registry,
            env.python_image,
            env.uv_image,
        ),
    )
    .expect("spec");
    let mut child = std::process::Command::new(berth_bin())
        .args(["build", "--engine", "lxd", "--no-push"])
        .arg(&spec)
        .env("BERTH_REGISTRY_USERNAME", &env.registry_user)
        .env(
            "BERTH_REGISTRY_PASSWORD",
            env.creds_arg().split_once(':').expect("user:password").1,
        )
        .env("DOCKER_CONFIG", project.path().join("docker-config"))
        .current_dir(project.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("berth build");
    let pid = child.id();
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    while of_pid(&engine, pid)
        .await
        .iter()
        .all(|n| !is_instance(&engine, n))
    {
        if let Some(status) = child.try_wait().expect("wait") {
            panic!("berth ended ({status}) before its build container appeared");
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no build container appeared"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    child.kill().expect("SIGKILL berth");
    child.wait().expect("reap berth");
    assert!(
        !of_pid(&engine, pid).await.is_empty(),
        "a killed berth cleans up nothing itself, so its container is still there"
    );

    let next = plan(&env.busybox_image, vec![run("true")]);
    let tag = image_ref(env, "lxd-after-kill", "v1");
    let progress = Recorder::default();
    engine
        .build(&next, &build_options(env, &tag), &progress)
        .await
        .expect("the next build");
    let _ = engine.remove(&tag, Default::default()).await;
    assert_eq!(
        of_pid(&engine, pid).await,
        Vec::<String>::new(),
        "the next build removes what the killed one left; its warnings: {:?}",
        progress.warnings()
    );
}
