//! What an engine still holds of one test's berth runs, asked of the engine itself (its CLI or its own API),
//! never of berth's bookkeeping: a berth that forgot something must not be the one reporting it.
//!
//! A run is recognised by names nobody else uses: the base and uv images are copies of the fixtures under a
//! tag of this test's own (every container a build makes, buildah's working containers and Docker's
//! intermediate ones alike, names one of them as its image), each RUN step prints a marker of its own (a
//! step still running anywhere on the machine shows it in its command line), containerd builds go to a
//! namespace only this test uses (and so to a state folder of their own), and LXD's containers carry the pid of
//! the berth that made them.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_backend_lxd::{LxdEngine, LxdOptions, NAME_PREFIX};
use berth_tests::env::TestEnv;

use crate::{rootless_user, Engine};

/// The containerd namespace this test's berth runs build in (`CONTAINERD_NAMESPACE`), so that anything in it
/// with berth's prefix is theirs and not a concurrent test's.
pub const NAMESPACE: &str = "berth-test-interrupted";

/// How long the engine may take to drop what a stopped berth had running: a hang guard, not a speed limit.
pub const GIVE_UP: Duration = Duration::from_secs(120);

/// What identifies one test's runs.
pub struct Marks<'a> {
    /// Image references only this test's specs use (their base and uv images).
    pub images: &'a [String],
    /// Text only this test's RUN steps carry.
    pub step_marker: &'a str,
}

/// Runs `command` and returns its output, failing the test when it does not succeed. The failure names the
/// program and its first argument only: others may be credentials.
pub fn output(mut command: Command) -> String {
    let what = format!(
        "{} {}",
        command.get_program().to_string_lossy(),
        command
            .get_args()
            .next()
            .map(|a| a.to_string_lossy())
            .unwrap_or_default()
    );
    let out = command
        .output()
        .unwrap_or_else(|e| panic!("run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Processes on this machine whose command line carries `marker` (a build step still running in any engine:
/// BuildKit's and buildah's runc, containerd's shim, an LXD container all run in this kernel).
fn marked_processes(marker: &str) -> Vec<String> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().parse::<u32>().is_ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|line| line.contains(marker))
        .collect()
}

/// The engine's containers (running or not) that name one of `images` or carry the step marker.
async fn engine_containers(
    engine: Engine,
    env: &TestEnv,
    marks: &Marks<'_>,
    pid: u32,
) -> Vec<String> {
    let ours = |line: &str| {
        line.contains(marks.step_marker) || marks.images.iter().any(|i| line.contains(i.as_str()))
    };
    let format = "{{.ID}} {{.Image}} {{.Names}} {{.Command}}";
    let listing = match engine {
        Engine::Docker => {
            let mut docker = Command::new("docker");
            docker.args(["ps", "--all", "--no-trunc", "--format", format]);
            output(docker)
        }
        Engine::Podman | Engine::PodmanRootless => {
            let mut podman = match engine {
                Engine::PodmanRootless => rootless_user().command(&[], Path::new("podman")),
                _ => Command::new("podman"),
            };
            // buildah's working containers are Podman's "external" ones
            podman.args([
                "ps",
                "--all",
                "--external",
                "--no-trunc",
                "--format",
                format,
            ]);
            podman_listing(podman)
        }
        Engine::Containerd => return containerd_leftovers(env).await,
        Engine::Lxd => return lxd_leftovers(pid).await,
    };
    listing
        .lines()
        .filter(|l| ours(l))
        .map(str::to_string)
        .collect()
}

/// `podman ps --external`'s output. It fails when a working container it lists is removed before it reads
/// it (`determining buildah container for container ID: container not known`): the listing is asked again.
fn podman_listing(mut podman: Command) -> String {
    for _ in 0..10 {
        let out = podman.output().expect("run podman ps");
        if out.status.success() {
            return String::from_utf8_lossy(&out.stdout).into_owned();
        }
        let why = String::from_utf8_lossy(&out.stderr);
        assert!(
            why.contains("container not known"),
            "podman ps failed: {why}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("podman ps failed ten times in a row: containers kept vanishing while it listed them");
}

/// containerd in [`NAMESPACE`], with the state folder the test's berth runs use (the default one).
async fn containerd(env: &TestEnv) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        namespace: Some(NAMESPACE.to_string()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("cannot reach containerd: {e}\n  run scripts/env/up.sh first"))
}

/// Everything with berth's prefix in [`NAMESPACE`] (tasks, containers, active snapshots, leases, ingests) and
/// the build folders in its state folder.
async fn containerd_leftovers(env: &TestEnv) -> Vec<String> {
    let left = containerd(env)
        .await
        .leftovers()
        .await
        .expect("containerd leftovers");
    let label = |what: &'static str, ids: Vec<String>| {
        ids.into_iter().map(move |id| format!("{what} {id}"))
    };
    let folders = left
        .folders
        .iter()
        .map(|f| f.display().to_string())
        .collect();
    label("task", left.tasks)
        .chain(label("container", left.containers))
        .chain(label("active snapshot", left.snapshots))
        .chain(label("lease", left.leases))
        .chain(label("ingest", left.ingests))
        .chain(label("build folder", folders))
        .collect()
}

/// The ingests in [`NAMESPACE`] and the build folders of the berth process `pid` (their names carry it):
/// `ingest REF` and `build folder PATH`.
pub async fn containerd_named(env: &TestEnv, pid: u32) -> Vec<String> {
    let left = containerd(env)
        .await
        .leftovers()
        .await
        .expect("containerd leftovers");
    let ingests = left
        .ingests
        .into_iter()
        .filter(|r| r.starts_with(&format!("berth-ingest-{pid}-")))
        .map(|r| format!("ingest {r}"));
    let folders = left
        .folders
        .into_iter()
        .filter(|f| {
            f.file_name().is_some_and(|n| {
                n.to_string_lossy()
                    .starts_with(&format!("berth-build-{pid}-"))
            })
        })
        .map(|f| format!("build folder {}", f.display()));
    ingests.chain(folders).collect()
}

/// LXD containers and build folders of the berth with `pid`.
async fn lxd_leftovers(pid: u32) -> Vec<String> {
    let engine = LxdEngine::connect(LxdOptions::default())
        .await
        .unwrap_or_else(|e| panic!("cannot reach LXD: {e}\n  run scripts/env/up.sh first"));
    let left = engine.leftovers().await.expect("LXD leftovers");
    let prefix = format!("{NAME_PREFIX}{pid}-");
    left.instances
        .into_iter()
        .chain(
            left.folders
                .iter()
                .filter_map(|f| f.file_name().map(|n| n.to_string_lossy().into_owned())),
        )
        .filter(|name| name.starts_with(&prefix))
        .collect()
}

/// Waits (up to [`GIVE_UP`]) until the engine holds nothing of the berth with `pid` and no step of this test
/// runs; fails the test naming what stayed, and `after` (the round, for replaying it).
pub async fn nothing_left(engine: Engine, env: &TestEnv, marks: &Marks<'_>, pid: u32, after: &str) {
    let deadline = Instant::now() + GIVE_UP;
    loop {
        let mut left = engine_containers(engine, env, marks, pid).await;
        left.extend(
            marked_processes(marks.step_marker)
                .into_iter()
                .map(|p| format!("process: {p}")),
        );
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{after}: {GIVE_UP:?} later the engine still holds:\n  {}",
            left.join("\n  ")
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Whether a step carrying `marker` runs on this machine.
pub fn step_running(marker: &str) -> bool {
    !marked_processes(marker).is_empty()
}

/// The registry holds `reference` whole or not at all: when its tag exists, every blob its manifest names
/// can be read (the manifest is pushed last). Returns whether the tag exists.
pub fn whole_or_absent(env: &TestEnv, reference: &str) -> bool {
    let image = format!("docker://{reference}");
    let creds = env.creds_arg();
    let inspect = Command::new("skopeo")
        .args([
            "inspect",
            "--raw",
            "--tls-verify=false",
            "--creds",
            &creds,
            &image,
        ])
        .output()
        .expect("run skopeo");
    if !inspect.status.success() {
        let why = String::from_utf8_lossy(&inspect.stderr);
        assert!(
            why.contains("manifest unknown") || why.contains("not found"),
            "skopeo inspect {reference} failed for another reason than a missing tag: {why}"
        );
        return false;
    }
    let copy = tempfile::tempdir().expect("temp dir");
    let target = format!("dir:{}", copy.path().display());
    let mut skopeo = Command::new("skopeo");
    skopeo.args([
        "copy",
        "--quiet",
        "--src-tls-verify=false",
        "--src-creds",
        &creds,
        &image,
        &target,
    ]);
    output(skopeo);
    true
}
