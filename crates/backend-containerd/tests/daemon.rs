//! The backend against the real containerd of `scripts/env/up.sh`: pulling through berth's registry client,
//! image records, and that nothing berth creates for an operation outlives it.

use std::os::unix::fs::PermissionsExt as _;
use std::time::Duration;

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions, Leftovers};
use berth_core::engine::{
    BuildOptions, ContainerEngine, NoProgress, Progress, ProgressEvent, RemoveOptions,
    TransferOptions,
};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Mount, PlanSecret, RunStep, Step};
use berth_core::ErrorKind;
use berth_tests::conformance::registry;
use berth_tests::conformance::support::plan;
use berth_tests::env::TestEnv;
use berth_tests::scratch_namespace::ScratchNamespace;

async fn engine(env: &TestEnv) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pull_inspect_tag_remove() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env).await;
    let options = TransferOptions {
        credentials: Some(env.credentials()),
        insecure: true,
    };
    engine
        .pull(&env.busybox_image, &options, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("pull {}: {e}", env.busybox_image));
    let image = engine
        .inspect(&env.busybox_image)
        .await
        .unwrap_or_else(|e| panic!("inspect: {e}"));
    assert!(image.id.starts_with("sha256:"), "{image:?}");
    assert!(!image.layers.is_empty(), "{image:?}");
    let alias = format!(
        "{}/berth-daemon-test/alias-{}:v1",
        env.registry,
        std::process::id()
    );
    engine.tag(&env.busybox_image, &alias).await.expect("tag");
    let tagged = engine.inspect(&alias).await.expect("inspect alias");
    assert_eq!(tagged.id, image.id);
    assert!(tagged.tags.contains(&alias), "{tagged:?}");
    engine
        .remove(&alias, RemoveOptions::default())
        .await
        .expect("remove");
    assert_eq!(
        engine
            .inspect(&alias)
            .await
            .map(drop)
            .expect_err("the alias is gone")
            .kind(),
        ErrorKind::NotFound
    );
    let left = engine.leftovers().await.expect("leftovers");
    assert!(
        left.leases.iter().all(|l| !l.starts_with("berth-pull")),
        "{left:?}"
    );
}

#[tokio::test]
async fn invalid_namespace_is_refused_before_any_request() {
    let err = ContainerdEngine::connect(ContainerdOptions {
        namespace: Some("bad\nname".into()),
        ..ContainerdOptions::default()
    })
    .await
    .map(drop)
    .expect_err("an invalid namespace is refused");
    assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err}");
    assert!(err.hint().is_some());
}

/// An engine in a namespace of its own with a fresh state folder (an empty step cache), so leftovers counted there
/// are this test's alone.
async fn isolated(env: &TestEnv, scratch: &ScratchNamespace) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        namespace: Some(scratch.namespace().to_string()),
        state_dir: Some(scratch.state().to_path_buf()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"))
}

/// What `engine` has now that it did not have in `before` (a run that failed earlier may have left some).
async fn new_leftovers(engine: &ContainerdEngine, before: &Leftovers) -> Leftovers {
    let now = engine.leftovers().await.expect("leftovers");
    let new = |now: Vec<String>, before: &[String]| -> Vec<String> {
        now.into_iter().filter(|id| !before.contains(id)).collect()
    };
    Leftovers {
        tasks: new(now.tasks, &before.tasks),
        containers: new(now.containers, &before.containers),
        snapshots: new(now.snapshots, &before.snapshots),
        leases: new(now.leases, &before.leases),
        ingests: new(now.ingests, &before.ingests),
        folders: now
            .folders
            .into_iter()
            .filter(|f| !before.folders.contains(f))
            .collect(),
    }
}

fn options(env: &TestEnv, tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.to_string()],
        credentials: vec![env.credentials()],
        ..BuildOptions::default()
    }
}

fn run_step(command: &str, mounts: Vec<Mount>) -> Step {
    Step::Run(RunStep {
        command: command.to_string(),
        mounts,
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_and_interrupted_builds_leave_nothing_behind() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-leftovers");
    let engine = isolated(env, &scratch).await;
    let before = engine.leftovers().await.expect("leftovers");
    let secret = scratch.state().join("secret");
    std::fs::write(&secret, "s3cr3t").expect("write secret");
    let mounts = || {
        vec![
            Mount::Cache {
                id: "leftovers".into(),
                target: "/cache".into(),
            },
            Mount::Secret {
                id: "s".into(),
                target: "/run/secrets/s".into(),
            },
        ]
    };
    let mut failing = plan(
        &env.busybox_image,
        vec![
            run_step("echo first > /first", vec![]),
            run_step("echo failing; exit 3", mounts()),
        ],
    );
    failing.secrets = vec![PlanSecret {
        id: "s".into(),
        source: secret.clone(),
    }];
    let tag = format!("{}/berth-daemon-test/leftovers:v1", env.registry);
    let err = engine
        .build(&failing, &options(env, &tag), &NoProgress)
        .await
        .expect_err("exit 3 fails the build");
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    let left = new_leftovers(&engine, &before).await;
    assert!(left.is_empty(), "after a failed build: {left:?}");

    let mut long = plan(
        &env.busybox_image,
        vec![run_step("echo berth-started; sleep 600", mounts())],
    );
    long.secrets = failing.secrets.clone();
    let progress = Lines::default();
    {
        let long_options = options(env, &tag);
        let build = engine.build(&long, &long_options, &progress);
        tokio::pin!(build);
        let started = async {
            while !progress.contains("berth-started") {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::select! {
            result = &mut build => panic!("the sleeping build ended: {result:?}"),
            _ = tokio::time::timeout(Duration::from_secs(120), started) => {}
        }
        assert!(progress.contains("berth-started"), "the step never started");
        let running = new_leftovers(&engine, &before).await;
        assert_eq!(running.tasks.len(), 1, "while running: {running:?}");
        // the build's own folder, holding the step's FIFOs
        assert_eq!(running.folders.len(), 1, "while running: {running:?}");
        // dropping the build future here is the interruption (what Ctrl-C does in berth)
    }
    // its cleanup runs on a thread of its own; berth waits for it before exiting, as here
    tokio::task::spawn_blocking(berth_backend_containerd::wait_for_cleanups)
        .await
        .expect("cleanups");
    let left = new_leftovers(&engine, &before).await;
    assert!(left.is_empty(), "after an interrupted build: {left:?}");
    let build_dirs = std::fs::read_dir(scratch.state().join("berth-test-leftovers").join("builds"))
        .map(|entries| entries.count())
        .unwrap_or(0);
    assert_eq!(build_dirs, 0, "build folders (FIFOs of steps) are left");
    assert_eq!(
        engine
            .inspect(&tag)
            .await
            .map(drop)
            .expect_err("no tag")
            .kind(),
        ErrorKind::NotFound
    );
}

/// The mount points runc creates for a step's mounts (and the host's resolv.conf) are not part of any layer: a
/// later step sees no trace of them, not even an empty file or folder.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mount_points_leave_no_trace() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env).await;
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("secret");
    std::fs::write(&secret, "value").expect("write secret");
    let mut mounted = plan(
        &env.busybox_image,
        vec![
            run_step(
                "test -s /run/berth-secrets/s && test -x /opt/berth-helper/uv && test -d /berth-cache-dir/",
                vec![
                    Mount::Secret {
                        id: "s".into(),
                        target: "/run/berth-secrets/s".into(),
                    },
                    Mount::Image {
                        alias: "uv".into(),
                        source: "/uv".into(),
                        target: "/opt/berth-helper/uv".into(),
                    },
                    Mount::Cache {
                        id: format!("trace-{}", std::process::id()),
                        target: "/berth-cache-dir".into(),
                    },
                ],
            ),
            run_step(
                "for p in /run/berth-secrets /opt/berth-helper /berth-cache-dir; do \
                 if [ -e $p ]; then echo \"left: $p\"; exit 1; fi; done",
                vec![],
            ),
        ],
    );
    mounted.secrets = vec![PlanSecret {
        id: "s".into(),
        source: secret,
    }];
    mounted.helper_images = vec![berth_core::plan::HelperImage {
        alias: "uv".into(),
        reference: env.uv_image.clone(),
    }];
    let tag = format!(
        "{}/berth-daemon-test/no-trace-{}:v1",
        env.registry,
        std::process::id()
    );
    engine
        .build(&mounted, &options(env, &tag), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("build: {e}"));
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}

/// The step cache reuses a step until its record has gone unused for a week; then the record is dropped and its
/// blob is no longer a root for containerd's collector, so the step runs again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unused_cache_records_expire() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let namespace = "berth-test-prune";
    let scratch = ScratchNamespace::new(env, namespace);
    let engine = isolated(env, &scratch).await;
    let random = plan(
        &env.busybox_image,
        vec![
            Step::Env(vec![("RUN_ID".into(), format!("{}", std::process::id()))]),
            run_step("cat /proc/sys/kernel/random/uuid > /nonce", vec![]),
        ],
    );
    let tag = format!("{}/berth-daemon-test/prune:v1", env.registry);
    let mut layers = Vec::new();
    for round in 0..3 {
        if round == 2 {
            // age every record by eight days
            let steps = scratch.state().join(namespace).join("steps");
            for entry in std::fs::read_dir(&steps).expect("step records").flatten() {
                let old = std::time::SystemTime::now() - Duration::from_secs(8 * 24 * 3600);
                std::fs::File::options()
                    .append(true)
                    .open(entry.path())
                    .and_then(|f| f.set_modified(old))
                    .expect("age a record");
            }
        }
        engine
            .build(&random, &options(env, &tag), &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("build {round}: {e}"));
        layers.push(engine.inspect(&tag).await.expect("inspect").layers);
    }
    assert_eq!(
        layers[0], layers[1],
        "the second build did not use the cache"
    );
    assert_ne!(layers[1], layers[2], "an expired record was still used");
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}

/// A `--no-cache` build whose step makes different bytes replaces the step's record; the blob of the record it
/// replaced is no longer a root, so containerd's collector can take it (it stayed rooted for ever: 19 GB here
/// after a week of rebuilding 1 GiB contexts).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replaced_cache_record_leaves_no_root_behind() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-replaced");
    let engine = isolated(env, &scratch).await;
    let random = plan(
        &env.busybox_image,
        vec![run_step(
            "cat /proc/sys/kernel/random/uuid > /nonce",
            vec![],
        )],
    );
    let tag = format!(
        "{}/berth-daemon-test/replaced-{}:v1",
        env.registry,
        std::process::id()
    );
    let mut rooted = Vec::new();
    for round in 0..3 {
        let options = BuildOptions {
            no_cache: true,
            ..options(env, &tag)
        };
        engine
            .build(&random, &options, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("build {round}: {e}"));
        rooted.push(scratch.rooted());
    }
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
    assert_eq!(
        rooted[0].len(),
        1,
        "one step, one rooted blob: {:?}",
        rooted[0]
    );
    assert_eq!(rooted[1].len(), 1, "after a rebuild: {:?}", rooted[1]);
    assert_eq!(rooted[2].len(), 1, "after a third build: {:?}", rooted[2]);
    assert_ne!(rooted[0], rooted[2], "the step made the same bytes twice");
}

/// Cancels builds at moments spread over their whole course (pulling, preparing, creating the container and
/// task, running): whatever request was in flight, nothing berth created may be left.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelling_at_any_moment_leaves_nothing_behind() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-cancel");
    let engine = isolated(env, &scratch).await;
    let before = engine.leftovers().await.expect("leftovers");
    let steps = vec![
        run_step("echo one > /one", vec![]),
        run_step(
            "echo cancel-me; sleep 600",
            vec![Mount::Cache {
                id: "cancel".into(),
                target: "/cache".into(),
            }],
        ),
    ];
    let tag = format!("{}/berth-daemon-test/cancel:v1", env.registry);
    let mut interrupted_running = 0;
    for millis in (0..1600).step_by(80) {
        let mut plan = plan(&env.busybox_image, steps.clone());
        // a fresh first step each time, so it really runs instead of coming from the step cache
        plan.steps
            .insert(0, Step::Env(vec![("ROUND".into(), millis.to_string())]));
        plan.steps[1] = run_step(&format!("echo {millis} > /one"), vec![]);
        let build_options = options(env, &tag);
        let build = engine.build(&plan, &build_options, &NoProgress);
        if tokio::time::timeout(Duration::from_millis(millis), build)
            .await
            .is_ok()
        {
            panic!("a build with a 600 s step ended within {millis} ms");
        }
        // the dropped build cleans up on a thread of its own; berth waits for it before exiting, as here
        tokio::task::spawn_blocking(berth_backend_containerd::wait_for_cleanups)
            .await
            .expect("cleanups");
        let left = new_leftovers(&engine, &before).await;
        assert!(left.is_empty(), "cancelled after {millis} ms: {left:?}");
        if millis > 800 {
            interrupted_running += 1;
        }
    }
    assert!(interrupted_running > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_layers_are_reproducible_from_an_empty_cache() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let files = tempfile::tempdir().expect("temp dir");
    let script = files.path().join("run.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").expect("write");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let mut copying = plan(
        &env.busybox_image,
        vec![
            Step::Copy(CopyStep {
                sources: vec!["app".into()],
                destination: "/opt/app/".into(),
                chown: None,
            }),
            Step::Copy(CopyStep {
                sources: vec!["owned.txt".into()],
                destination: "/home/owned/".into(),
                chown: Some("nobody".into()),
            }),
        ],
    );
    copying.context = vec![
        ContextEntry {
            path: "app/bin/run.sh".into(),
            source: ContextSource::File(script),
        },
        ContextEntry {
            path: "app/data/z.txt".into(),
            source: ContextSource::Bytes(b"z\n".to_vec()),
        },
        ContextEntry {
            path: "app/a.txt".into(),
            source: ContextSource::Bytes(b"a\n".to_vec()),
        },
        ContextEntry {
            path: "owned.txt".into(),
            source: ContextSource::Bytes(b"mine\n".to_vec()),
        },
    ];
    let mut digests = Vec::new();
    for round in ["a", "b"] {
        let scratch = ScratchNamespace::new(env, &format!("berth-test-repro-{round}"));
        let engine = isolated(env, &scratch).await;
        let tag = format!(
            "{}/berth-daemon-test/repro-{round}-{}:v1",
            env.registry,
            std::process::id()
        );
        let built = engine
            .build(&copying, &options(env, &tag), &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("build {round}: {e}"));
        let image = engine.inspect(&tag).await.expect("inspect");
        assert_eq!(image.id, built.id);
        let transfer = TransferOptions {
            credentials: Some(env.credentials()),
            insecure: true,
        };
        engine
            .push(&tag, &transfer, &NoProgress)
            .await
            .unwrap_or_else(|e| panic!("push {round}: {e}"));
        let pushed = registry::download(env, &tag);
        let _ = registry::delete(env, &tag);
        let blobs: Vec<String> = pushed.layers.iter().map(|(d, _, _)| d.clone()).collect();
        engine
            .remove(&tag, RemoveOptions::default())
            .await
            .expect("remove");
        digests.push((image.layers, blobs));
    }
    assert_eq!(
        digests[0], digests[1],
        "two builds from empty caches gave different copy layers"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushed_image_runs_on_docker_and_podman() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env).await;
    let token = format!("made-by-containerd-{}", std::process::id());
    let built = plan(
        &env.busybox_image,
        vec![
            run_step(&format!("echo {token} > /made"), vec![]),
            Step::Env(vec![("BERTH_TOKEN".into(), token.clone())]),
            Step::Entrypoint(vec![
                "/bin/sh".into(),
                "-c".into(),
                "cat /made; echo $BERTH_TOKEN".into(),
            ]),
        ],
    );
    let tag = format!(
        "{}/berth-daemon-test/runs-everywhere-{}:v1",
        env.registry,
        std::process::id()
    );
    engine
        .build(&built, &options(env, &tag), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("build: {e}"));
    let transfer = TransferOptions {
        credentials: Some(env.credentials()),
        insecure: true,
    };
    let pushing = Lines::default();
    engine
        .push(&tag, &transfer, &pushing)
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    // the base layer came from the fixture's repository of the same registry: mounted, not uploaded
    assert!(
        pushing.contains("mounted sha256:"),
        "the busybox layer was not mounted from its repository: {:?}",
        pushing.0.lock().map(|l| l.clone()).unwrap_or_default()
    );
    let docker_config = tempfile::tempdir().expect("temp dir");
    let config = docker_config.path().display().to_string();
    let login = tool_with_stdin(
        "docker",
        &[
            "--config",
            &config,
            "login",
            "-u",
            &env.registry_user,
            "--password-stdin",
            &env.registry,
        ],
        env.registry_password().expose(),
    );
    assert!(login.0, "docker login: {}", login.1);
    let creds = env.creds_arg();
    let runs = [
        (
            "docker",
            vec!["--config", config.as_str(), "pull", tag.as_str()],
            vec!["run", "--rm", tag.as_str()],
        ),
        (
            "podman",
            vec![
                "pull",
                "--tls-verify=false",
                "--creds",
                creds.as_str(),
                tag.as_str(),
            ],
            vec!["run", "--rm", tag.as_str()],
        ),
    ];
    for (runner, pull, run) in runs {
        let _ = tool_with_stdin(runner, &["rmi", "-f", &tag], "");
        let (ok, out) = tool_with_stdin(runner, &pull, "");
        assert!(ok, "{runner} pull: {out}");
        let (ok, out) = tool_with_stdin(runner, &run, "");
        assert!(ok, "{runner} run: {out}");
        assert_eq!(
            out.lines().filter(|l| *l == token).count(),
            2,
            "{runner} run: {out}"
        );
        let _ = tool_with_stdin(runner, &["rmi", "-f", &tag], "");
    }
    let _ = registry::delete(env, &tag);
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}

fn tool_with_stdin(program: &str, args: &[&str], stdin: &str) -> (bool, String) {
    let mut command = std::process::Command::new(program);
    command.args(args);
    let out = berth_tests::output_with_stdin(command, stdin);
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

/// Progress that keeps output lines.
#[derive(Default)]
struct Lines(std::sync::Mutex<Vec<String>>);

impl Lines {
    fn contains(&self, needle: &str) -> bool {
        self.0
            .lock()
            .map(|lines| lines.iter().any(|l| l.contains(needle)))
            .unwrap_or(false)
    }
}

impl Progress for Lines {
    fn event(&self, event: ProgressEvent) {
        if let (ProgressEvent::Line(line), Ok(mut lines)) = (event, self.0.lock()) {
            lines.push(line);
        }
    }
}
