//! What LXD builds leave behind: nothing. A failed build and a cancelled one (its future dropped, as Ctrl-C in
//! berth does) remove their container and build folder; a berth killed mid-build (SIGKILL: nothing of berth
//! runs) leaves its container, and the next build removes it. Checked with the backend's own
//! [`LxdEngine::leftovers`], which lists berth's containers and build folders on the server.

use std::sync::Arc;
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

/// LXD's socket behind a stand-in that holds the request creating a container for [`HELD`] before passing it on,
/// as a loaded server is slow to read it; it records the container's name and the operation LXD answered with.
struct SlowCreation {
    dir: tempfile::TempDir,
    held: Arc<Held>,
}

/// How long the request creating a container is held.
const HELD: Duration = Duration::from_secs(3);

#[derive(Default)]
struct Held {
    /// The container the held request names.
    name: std::sync::Mutex<Option<String>>,
    /// The start of LXD's answer to it, once written.
    answer: std::sync::Mutex<Option<String>>,
    arrived: tokio::sync::Notify,
}

impl SlowCreation {
    async fn start() -> SlowCreation {
        let dir = tempfile::tempdir().expect("socket folder");
        let real = LxdOptions::default().lxd_dir();
        // build containers' root folders are read under the folder given as LXD's
        std::os::unix::fs::symlink(real.join("containers"), dir.path().join("containers"))
            .expect("containers link");
        let listener =
            tokio::net::UnixListener::bind(dir.path().join("unix.socket")).expect("bind");
        let held = Arc::new(Held::default());
        let shared = held.clone();
        let upstream = real.join("unix.socket");
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relay(client, upstream.clone(), shared.clone()));
            }
        });
        SlowCreation { dir, held }
    }

    fn options(&self) -> LxdOptions {
        LxdOptions {
            lxd_dir: Some(self.dir.path().to_path_buf()),
            ..LxdOptions::default()
        }
    }
}

/// Passes one connection on; a request creating a container goes after [`HELD`].
async fn relay(mut client: tokio::net::UnixStream, upstream: std::path::PathBuf, held: Arc<Held>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut request = Vec::new();
    let mut chunk = [0u8; 16384];
    // the head, and a body of its Content-Length
    let whole = loop {
        let Ok(n) = client.read(&mut chunk).await else {
            return;
        };
        if n == 0 {
            return;
        }
        request.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(&request).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end]
                .lines()
                .filter_map(|l| l.split_once(':'))
                .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                .and_then(|(_, v)| v.trim().parse::<usize>().ok())
                .unwrap_or(0);
            if request.len() >= end + 4 + length {
                break text;
            }
        }
    };
    let creation = whole.starts_with("POST /1.0/instances HTTP/");
    if creation {
        let body = &whole[whole.find("\r\n\r\n").expect("head") + 4..];
        let spec: serde_json::Value = serde_json::from_str(body).expect("creation body is JSON");
        *held.name.lock().expect("lock") = spec["name"].as_str().map(str::to_string);
        held.arrived.notify_one();
        tokio::time::sleep(HELD).await;
    }
    let Ok(mut server) = tokio::net::UnixStream::connect(&upstream).await else {
        return;
    };
    if server.write_all(&request).await.is_err() {
        return;
    }
    if creation {
        let n = server.read(&mut chunk).await.unwrap_or(0);
        *held.answer.lock().expect("lock") =
            Some(String::from_utf8_lossy(&chunk[..n]).into_owned());
        // the build may have hung up: its answer is then lost, as on a real server
        let _ = client.write_all(&chunk[..n]).await;
    }
    let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
}

/// Runs `lxc query` on the real server.
fn lxc_query(path: &str) -> std::process::Output {
    std::process::Command::new("lxc")
        .args(["query", path])
        .output()
        .expect("run lxc")
}

/// A build dropped while LXD has not yet read the request creating its container (a loaded server) still
/// leaves nothing: the request is answered, and the container it made removed, before berth may exit. When the
/// drop cut that request off, LXD made the container after berth's removal had looked and gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_dropped_before_lxd_reads_its_creation_leaves_nothing() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let slow = SlowCreation::start().await;
    let engine = LxdEngine::connect(slow.options())
        .await
        .unwrap_or_else(|e| panic!("cannot reach LXD through the stand-in socket: {e}"));
    let long = plan(
        &env.busybox_image,
        vec![run(format!("echo {}; sleep 900", unique("held")))],
    );
    let tag = image_ref(env, "lxd-held-creation", "v1");
    let options = build_options(env, &tag);
    tokio::select! {
        result = engine.build(&long, &options, &NoProgress) => {
            panic!("the build ended before it asked for a container: {result:?}")
        }
        _ = tokio::time::timeout(GIVE_UP, slow.held.arrived.notified()) => {}
    }
    // the build is dropped here, its creation request held; a front end then waits for the background work
    tokio::task::spawn_blocking(berth_backend_lxd::wait_for_cleanups)
        .await
        .expect("wait for cleanups");
    let name = slow
        .held
        .name
        .lock()
        .expect("lock")
        .clone()
        .expect("the held request names its container");
    let deadline = tokio::time::Instant::now() + GIVE_UP;
    let answer = loop {
        if let Some(answer) = slow.held.answer.lock().expect("lock").clone() {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "LXD never answered the held request"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // the operation making the container (gone from LXD's list once it has ended a while)
    if let Some(at) = answer.find("\"operation\":\"") {
        let operation = answer[at + 13..].split('"').next().unwrap_or_default();
        let _ = lxc_query(&format!("{operation}/wait?timeout=120"));
    } else {
        assert!(
            answer.contains("\"type\":\"error\""),
            "LXD answered the held request with neither an operation nor an error:\n{answer}"
        );
    }
    let found = lxc_query(&format!("/1.0/instances/{name}"));
    assert!(
        !found.status.success(),
        "container {name} was made after the build was dropped, and stays:\n{}",
        String::from_utf8_lossy(&found.stdout)
    );
    assert!(
        !is_instance(&engine, &name),
        "container {name}'s folder stays"
    );
}

/// The last look before berth exits: a container named after this process that no build holds (one that a
/// stopped build's own removal missed, whichever way) goes with `wait_for_cleanups`, as a front end calls it
/// before exiting. (CI twice found such a container of an interrupted `berth build`, made at 66 and 89 ms into
/// the run under load, whose cause was not reproduced; this look catches it whatever the cause.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_look_before_exit_removes_a_container_no_build_holds() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let engine = engine().await;
    // a build of this process on the server (what makes berth look there at exit)
    let quick = plan(&env.busybox_image, vec![run("true")]);
    let tag = image_ref(env, "lxd-last-look", "v1");
    engine
        .build(&quick, &build_options(env, &tag), &NoProgress)
        .await
        .expect("a one-step build");
    // an empty container named as this process's builds are, which no build holds
    let name = format!("{NAME_PREFIX}{}-lost-{}", std::process::id(), unique("x"));
    let made = std::process::Command::new("lxc")
        .args(["init", "--empty", &name])
        .output()
        .expect("run lxc");
    assert!(made.status.success(), "lxc init: {made:?}");
    assert!(lxc_query(&format!("/1.0/instances/{name}"))
        .status
        .success());

    tokio::task::spawn_blocking(berth_backend_lxd::wait_for_cleanups)
        .await
        .expect("wait for cleanups");
    let left = lxc_query(&format!("/1.0/instances/{name}"));
    if left.status.success() {
        let _ = std::process::Command::new("lxc")
            .args(["delete", "--force", &name])
            .output();
        panic!("{name} is still in LXD after the last look");
    }
}
