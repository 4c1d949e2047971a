//! Each Podman service answers only for its own leftovers: a RUN step marked as a killed berth's, running in
//! the rootless user's service, is listed by that service's engine, never by the rootful one's, though a root
//! berth sees every process of the machine.

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
    let rootful = engine(&env.podman_socket).await;
    let rootless = engine(&env.podman_rootless_socket).await;
    // a berth that is gone: no process has a pid above the kernel's limit (2^22); this test's pid keeps it unique
    for attempt in 0..3 {
        let mark = Mark {
            pid: 4_000_000_000 + std::process::id(),
            started: 1,
            build: attempt,
        };
        assert!(!mark.owner_alive());
        let context = tempfile::tempdir().expect("temp dir");
        let mut build = marked_rootless_build(env, &mark, context.path());
        let running = || {
            steps::marked_steps()
                .into_iter()
                .filter(move |s| s.mark == mark)
        };
        let started = Instant::now();
        let mut ended_early = None;
        while running().next().is_none() {
            if let Some(status) = build.try_wait().expect("wait for podman build") {
                ended_early = Some(status);
                break;
            }
            assert!(started.elapsed() < GIVE_UP, "the marked step never started");
            std::thread::sleep(Duration::from_millis(200));
        }
        if let Some(status) = ended_early {
            // a rootless berth of the other tests may end this dead berth's step the moment it starts, before
            // it was seen here; a build that cannot start its step at all fails every attempt
            eprintln!(
                "attempt {attempt}: the build ended ({status}) before its step was seen; again"
            );
            continue;
        }
        let listed = rootful.leftovers().await.expect("the rootful leftovers");
        assert!(
            !names(&listed, mark.pid),
            "the rootful service lists the rootless service's step as its leftover: {listed:?}"
        );
        let listed = rootless.leftovers().await.expect("the rootless leftovers");
        let own = names(&listed, mark.pid);
        // ended by the test itself: removing the services' leftovers would also take those of the other
        // Podman tests of this target, which run at the same time and must find their own
        let still_running = running().collect::<Vec<_>>();
        steps::end(&still_running);
        let ended = Instant::now();
        while build.try_wait().expect("wait for podman build").is_none() {
            assert!(
                ended.elapsed() < GIVE_UP,
                "the build went on after its step was ended"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        if own {
            return;
        }
        // a rootless berth of those tests ended this dead berth's step in between (it is a leftover of that
        // service, rightly): the round says nothing, so it is made again
        assert!(
            still_running.is_empty(),
            "the rootless service does not list its own leftover step: {listed:?}"
        );
        eprintln!("attempt {attempt}: the step was ended by another berth meanwhile; again");
    }
    panic!(
        "no attempt's step ran until the services were asked: each build ended first, or its step was ended by \
         another berth"
    );
}
