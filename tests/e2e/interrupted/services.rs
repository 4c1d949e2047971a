//! Each Podman service answers only for its own leftovers: a RUN step marked as a killed berth's, running in
//! the rootless user's service, is listed (and removed) by that service's engine, never by the rootful one's,
//! though a root berth sees every process of the machine.

use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use berth_backend_podman::steps::{self, Mark};
use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_core::engine::ContainerEngine as _;
use berth_tests::env::TestEnv;

use crate::probe::GIVE_UP;
use crate::rootless_user;

/// A connection to the service on `socket`.
async fn engine(socket: &Path) -> PodmanEngine {
    PodmanEngine::connect(PodmanOptions {
        socket: Some(socket.display().to_string()),
        ..Default::default()
    })
    .await
    .expect("connect to the Podman service")
}

/// The rootless user's `podman build` of a step that runs until it is ended, marked with `mark` (as berth marks
/// its builds), on the user's shared service; started, not waited for.
fn marked_rootless_build(env: &TestEnv, mark: &Mark, context: &Path) -> Child {
    std::fs::write(
        context.join("Containerfile"),
        format!("FROM {}\nRUN sleep 900\n", env.busybox_image),
    )
    .expect("write the Containerfile");
    std::fs::set_permissions(context, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let user = rootless_user();
    let url = format!("unix://{}", env.podman_rootless_socket.display());
    user.command(&[], Path::new("podman"))
        .args(["--url", &url, "build", "--no-cache", "--tls-verify=false"])
        .args(["--creds", &env.creds_arg()])
        .args(["--add-host", &format!("{}:127.0.0.1", mark.host())])
        .arg(context)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start podman build as the rootless user")
}

/// Whether one of `leftovers` is of the berth process `pid`.
fn names(leftovers: &[berth_core::engine::Leftover], pid: u32) -> bool {
    let owner = format!("berth process {pid}");
    leftovers.iter().any(|l| l.what.contains(&owner))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn podman_rootless_marked_step_is_not_the_rootful_services_leftover() {
    let (Some(env), Some(_)) = (
        TestEnv::for_engine("podman"),
        TestEnv::for_engine("podman_rootless"),
    ) else {
        return;
    };
    // a berth that is gone: no process has a pid above the kernel's limit (2^22); this test's pid keeps it unique
    let mark = Mark {
        pid: 4_000_000_000 + std::process::id(),
        started: 1,
        build: 0,
    };
    assert!(!mark.owner_alive());
    let context = tempfile::tempdir().expect("temp dir");
    let mut build = marked_rootless_build(env, &mark, context.path());
    let started = Instant::now();
    while !steps::marked_steps().iter().any(|s| s.mark == mark) {
        if let Some(status) = build.try_wait().expect("wait for podman build") {
            panic!("the rootless build ended ({status}) before its step ran");
        }
        assert!(started.elapsed() < GIVE_UP, "the marked step never started");
        std::thread::sleep(Duration::from_millis(200));
    }
    let rootful = engine(&env.podman_socket).await;
    let rootless = engine(&env.podman_rootless_socket).await;
    let listed = rootful.leftovers().await.expect("the rootful leftovers");
    assert!(
        !names(&listed, mark.pid),
        "the rootful service lists the rootless service's step as its leftover: {listed:?}"
    );
    // still there, and the rootless service's own (this also shows the step was not gone meanwhile)
    let listed = rootless.leftovers().await.expect("the rootless leftovers");
    assert!(
        names(&listed, mark.pid),
        "the rootless service does not list its own leftover step: {listed:?}"
    );
    let removed = rootful.remove_leftovers().await.expect("rootful removal");
    assert!(!names(&removed, mark.pid), "{removed:?}");
    assert!(steps::marked_steps().iter().any(|s| s.mark == mark));
    let removed = rootless.remove_leftovers().await.expect("rootless removal");
    assert!(names(&removed, mark.pid), "{removed:?}");
    let ended = Instant::now();
    while build.try_wait().expect("wait for podman build").is_none() {
        assert!(
            ended.elapsed() < GIVE_UP,
            "the build went on after its step was ended"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert!(!steps::marked_steps().iter().any(|s| s.mark == mark));
}
