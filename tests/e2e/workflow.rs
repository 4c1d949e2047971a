//! The project workflow (berth-workflow) on the fake engine, with a fake registry on loopback: no daemon, no
//! root. What an image whose base failed becomes, `--if-unknown`, the lock, pushes overlapping builds, `-j`,
//! cancellation, one unit's blocking work not stalling another, and credential helpers run once per registry.
//! Every wait that a broken workflow would make endless is bounded by [`BOUND`], so such a test fails instead of
//! hanging; no assertion depends on how long anything took.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::engine::{Network, Progress, ProgressEvent};
use berth_core::spec::{load_spec, ImageSpec};
use berth_core::tag::Namer;
use berth_core::ErrorKind;
use berth_registry::CredentialResolver;
use berth_tests::fake_engine::{fail, Call, FakeEngine, Hook};
use berth_tests::fake_http::{Answer, FakeServer};
use berth_workflow::lock::Lock;
use berth_workflow::project::Project;
use berth_workflow::project_units::ProjectUnits;
use berth_workflow::{
    run, units, Context, IfUnknown, OpenEngine, Outcome, Registries, RunOptions, RunProgress, Unit,
};
use tokio::sync::watch;

/// How long a test waits for something a correct workflow does at once.
const BOUND: Duration = Duration::from_secs(8);

/// A registry on loopback: `/v2/` answers, a manifest of a repository named in `present` is there, one named in
/// `unknown` is refused (the registry cannot tell), any other is absent.
fn registry(present: &'static [&'static str], unknown: &'static [&'static str]) -> FakeServer {
    FakeServer::tcp(move |request| {
        let target = request.target.as_str();
        if target == "/v2/" {
            return Answer::reply("200 OK", "", b"");
        }
        let repo = |name: &str| target.contains(&format!("/{name}/manifests/"));
        if present.iter().any(|n| repo(n)) {
            let digest = format!(
                "Docker-Content-Digest: sha256:{}\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\n",
                "a".repeat(64)
            );
            return Answer::reply("200 OK", &digest, b"");
        }
        if unknown.iter().any(|n| repo(n)) {
            return Answer::reply("403 Forbidden", "", b"");
        }
        Answer::reply("404 Not Found", "", b"")
    })
}

/// Spec files in a folder of their own.
struct Specs {
    dir: tempfile::TempDir,
}

impl Specs {
    fn new() -> Specs {
        Specs {
            dir: tempfile::tempdir().expect("temp dir"),
        }
    }

    /// `name.yaml`, a spec of that name in `server`'s `team` repository.
    fn in_registry(&self, server: &FakeServer, name: &str) -> ImageSpec {
        self.write(
            &format!("{name}.yaml"),
            &format!("name: {name}\nregistry: {}/team\n", server.addr),
        )
    }

    fn write(&self, file: &str, text: &str) -> ImageSpec {
        let path = self.dir.path().join(file);
        std::fs::write(&path, text).expect("write spec");
        load_spec(&path).expect("spec loads")
    }
}

/// Progress recorded: the run's lines, and each image's events, in order.
#[derive(Default)]
struct Recorder {
    lines: Mutex<Vec<String>>,
}

impl Recorder {
    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl Progress for Recorder {
    fn event(&self, event: ProgressEvent) {
        let line = match event {
            ProgressEvent::Line(text) => text,
            ProgressEvent::Warning(text) => format!("warning: {text}"),
            other => format!("{other:?}"),
        };
        self.lines
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(line);
    }
}

impl RunProgress for Recorder {
    fn image(&self, _image: &str) -> Box<dyn Progress> {
        Box::new(berth_core::engine::NoProgress)
    }
}

fn context(engine: &Arc<FakeEngine>, registries: Registries) -> (Context, Arc<Recorder>) {
    let recorder = Arc::new(Recorder::default());
    let opened: Arc<dyn berth_core::engine::ContainerEngine> = engine.clone();
    let open: Arc<dyn OpenEngine> = Arc::new(opened);
    let context = Context {
        namer: Arc::new(Namer::new(None)),
        registries: Arc::new(registries),
        engine: open,
        progress: recorder.clone(),
    };
    (context, recorder)
}

/// Registry access that finds no credentials anywhere.
fn no_credentials() -> Registries {
    Registries::with_resolver(
        Vec::new(),
        None,
        CredentialResolver::with_vars(HashMap::new()),
    )
    .expect("registries")
}

fn options(jobs: usize) -> RunOptions {
    RunOptions {
        force: false,
        no_push: false,
        if_unknown: IfUnknown::Fail,
        network: Network::Default,
        no_cache: false,
        jobs,
        lock_dir: None,
    }
}

fn units_of(context: &Context, specs: &[(&str, &ImageSpec)]) -> Vec<Unit> {
    let labelled: Vec<(String, &ImageSpec)> =
        specs.iter().map(|(l, s)| (l.to_string(), *s)).collect();
    units(&context.namer, &labelled).expect("units")
}

async fn bounded<T>(what: &str, work: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(BOUND, work)
        .await
        .unwrap_or_else(|_| panic!("{what}: still waiting after {BOUND:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_whose_base_failed_is_not_built_and_says_so() {
    let server = registry(&[], &[]);
    let specs = Specs::new();
    let reg = format!("registry: {}/team\n", server.addr);
    let base = specs.in_registry(&server, "base");
    let child = specs.write(
        "child.yaml",
        &format!("name: child\n{reg}base_image: {{spec: base.yaml}}\n"),
    );
    let other = specs.in_registry(&server, "other");
    let engine = FakeEngine::new();
    engine.fail_build("/base:", ErrorKind::BuildFailed);
    let (context, _) = context(&engine, no_credentials());
    let units = units_of(
        &context,
        &[("child", &child), ("other", &other), ("base", &base)],
    );
    let outcomes = bounded("run", run(&units, &context, &options(4)))
        .await
        .expect("run");
    let by_name: HashMap<&str, &Outcome> = units
        .iter()
        .map(|u| u.name.name.as_str())
        .zip(&outcomes)
        .collect();
    assert!(
        matches!(by_name["base"], Outcome::Failed(e) if e.kind() == ErrorKind::BuildFailed),
        "{:?}",
        by_name["base"]
    );
    match by_name["child"] {
        Outcome::Failed(e) => assert!(
            e.to_string().contains("not built: its base image")
                && e.to_string().contains("/team/base:"),
            "{e}"
        ),
        other => panic!("the child of a failed base: {other:?}"),
    }
    let other_name = units
        .iter()
        .find(|u| u.name.name == "other")
        .expect("other")
        .name
        .to_string();
    assert!(
        matches!(by_name["other"], Outcome::Pushed { digest } if *digest == FakeEngine::digest_of(&other_name)),
        "{:?}",
        by_name["other"]
    );
    let built = engine.built();
    assert!(
        !built.iter().any(|t| t.contains("/child:")),
        "the child was built: {built:?}"
    );
    assert_eq!(engine.pushed(), [other_name]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn if_unknown_fails_builds_or_skips() {
    let server = registry(&["there"], &["unsure"]);
    let specs = Specs::new();
    let unsure = specs.in_registry(&server, "unsure");
    let there = specs.in_registry(&server, "there");

    let engine = FakeEngine::new();
    let (context, _) = context(&engine, no_credentials());
    let units = units_of(&context, &[("unsure", &unsure), ("there", &there)]);
    let err = run(&units, &context, &options(2))
        .await
        .expect_err("--if-unknown fail ends the run");
    assert!(
        err.to_string().contains("cannot tell whether")
            && err.to_string().contains("/team/unsure:"),
        "{err}"
    );
    assert!(
        err.hint()
            .unwrap_or_default()
            .contains("--if-unknown build|skip"),
        "{err}"
    );
    assert!(engine.calls().is_empty(), "{:?}", engine.calls());

    let skip = RunOptions {
        if_unknown: IfUnknown::Skip,
        ..options(2)
    };
    let outcomes = run(&units, &context, &skip).await.expect("run");
    assert!(
        matches!(outcomes[0], Outcome::Skipped(_)),
        "{:?}",
        outcomes[0]
    );
    assert!(
        matches!(&outcomes[1], Outcome::Present { digest } if digest.starts_with("sha256:aaaa"))
    );
    assert!(engine.calls().is_empty(), "{:?}", engine.calls());

    let build = RunOptions {
        if_unknown: IfUnknown::Build,
        ..options(2)
    };
    let outcomes = run(&units, &context, &build).await.expect("run");
    assert!(
        matches!(outcomes[0], Outcome::Pushed { .. }),
        "{:?}",
        outcomes[0]
    );
    assert!(matches!(outcomes[1], Outcome::Present { .. }));
    assert_eq!(engine.built(), [units[0].name.to_string()]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_project_build_gives_the_lock_and_a_failure_keeps_it_unwritten() {
    let server = registry(&[], &[]);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("base.yaml"), "name: base\n").expect("write");
    std::fs::write(
        dir.path().join("berth.yaml"),
        format!(
            "registry: {}/team\nimages:\n  base: base.yaml\n  app:\n    name: app\n    base_image: {{spec: base.yaml}}\n\
             tasks:\n  prepare: base\n  train: app\n",
            server.addr
        ),
    )
    .expect("write");
    let project = Project::find(dir.path()).expect("reads").expect("found");
    let engine = FakeEngine::new();
    let (context, _) = context(&engine, no_credentials());
    let project_units =
        ProjectUnits::new(&project, &context.namer, project.registry.clone()).expect("units");
    let outcomes = run(&project_units.units, &context, &options(2))
        .await
        .expect("run");
    let (lock, missing) = project_units.locked(&outcomes, None);
    assert!(missing.is_empty(), "{missing:?}");
    let app = project_units
        .units
        .iter()
        .find(|u| u.name.name == "app")
        .expect("app")
        .name
        .to_string();
    assert_eq!(
        lock.tasks["train"],
        format!("{app}@{}", FakeEngine::digest_of(&app))
    );
    assert_eq!(lock.images["app"], lock.tasks["train"]);
    let path = project.dir().join(berth_workflow::lock::LOCK_FILE);
    lock.write(&path).expect("write the lock");
    assert_eq!(Lock::read(&path).expect("read"), Some(lock.clone()));
    let wanted = project_units.wanted(None);
    assert!(
        lock.differences(&wanted).is_empty(),
        "{:?}",
        lock.differences(&wanted)
    );

    // the base fails now: neither it nor the image on it is in a registry, so there is no lock to write
    let failing = FakeEngine::new();
    failing.fail_build("/base:", ErrorKind::BuildFailed);
    let (context, _) = self::context(&failing, no_credentials());
    let outcomes = run(&project_units.units, &context, &options(2))
        .await
        .expect("run");
    let (_, missing) = project_units.locked(&outcomes, None);
    assert_eq!(
        missing,
        [
            "image `base`",
            "image `app`",
            "task `prepare`",
            "task `train`"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_does_not_hold_a_build_slot() {
    let server = registry(&[], &[]);
    let specs = Specs::new();
    let a = specs.in_registry(&server, "a");
    let b = specs.in_registry(&server, "b");
    let engine = FakeEngine::new();
    // Every push waits until both images are built. With one build slot, a push that held the slot would keep
    // the other image from being built: the run would never end.
    let (built_tx, built_rx) = watch::channel(0usize);
    let built_tx = Arc::new(built_tx);
    let count: Hook = Arc::new(move |_| {
        built_tx.send_modify(|n| *n += 1);
        Box::pin(async { Ok(()) })
    });
    engine.on_build("/team/", count);
    let both_built: Hook = Arc::new(move |_| {
        let mut rx = built_rx.clone();
        Box::pin(async move {
            let _ = rx.wait_for(|n| *n == 2).await;
            Ok(())
        })
    });
    engine.on_push("/team/", both_built);
    let (context, _) = context(&engine, no_credentials());
    let units = units_of(&context, &[("a", &a), ("b", &b)]);
    let outcomes = bounded(
        "a push waiting for the other build",
        run(&units, &context, &options(1)),
    )
    .await
    .expect("run");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Pushed { .. })),
        "{outcomes:?}"
    );
    assert_eq!(engine.most_builds_at_once(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_bounds_the_builds_at_once() {
    let specs = Specs::new();
    let all: Vec<ImageSpec> = (0..4)
        .map(|i| specs.write(&format!("s{i}.yaml"), &format!("name: s{i}\n")))
        .collect();
    let labelled: Vec<(String, &ImageSpec)> = all
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("s{i}"), s))
        .collect();
    for jobs in [1, 2] {
        let engine = FakeEngine::new();
        if jobs == 2 {
            // builds meet in pairs: with fewer than two slots the first would wait for ever
            let pairs = Arc::new(tokio::sync::Barrier::new(2));
            engine.on_build(
                "s",
                Arc::new(move |_| {
                    let pairs = pairs.clone();
                    Box::pin(async move {
                        pairs.wait().await;
                        Ok(())
                    })
                }),
            );
        }
        let (context, _) = context(&engine, no_credentials());
        let units = units(&context.namer, &labelled).expect("units");
        let outcomes = bounded("builds in pairs", run(&units, &context, &options(jobs)))
            .await
            .expect("run");
        assert!(
            outcomes.iter().all(|o| matches!(o, Outcome::Local)),
            "{outcomes:?}"
        );
        assert_eq!(engine.built().len(), 4);
        assert_eq!(engine.most_builds_at_once(), jobs, "-j {jobs}");
    }
}

/// Sends on a channel when dropped: the build future holding it was dropped.
struct SaysWhenDropped(std::sync::mpsc::Sender<()>);

impl Drop for SaysWhenDropped {
    fn drop(&mut self) {
        let _ = self.0.send(());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_run_stops_its_builds() {
    let specs = Specs::new();
    let first = specs.write("first.yaml", "name: first\n");
    let second = specs.write("second.yaml", "name: second\n");
    let engine = FakeEngine::new();
    let (started_tx, mut started_rx) = watch::channel(false);
    let (dropped_tx, dropped_rx) = std::sync::mpsc::channel();
    let dropped_tx = Mutex::new(dropped_tx);
    // both hang; with one build slot only one starts
    engine.on_build(
        ":",
        Arc::new(move |_| {
            let guard = SaysWhenDropped(dropped_tx.lock().expect("lock").clone());
            let _ = started_tx.send(true);
            Box::pin(async move {
                let _guard = guard;
                std::future::pending::<()>().await;
                Ok(())
            })
        }),
    );
    let (context, _) = context(&engine, no_credentials());
    let units = units_of(&context, &[("first", &first), ("second", &second)]);
    let running = tokio::spawn(async move { run(&units, &context, &options(1)).await.map(drop) });
    bounded("the first build starts", started_rx.wait_for(|s| *s))
        .await
        .expect("started");
    running.abort();
    assert!(running.await.expect_err("aborted").is_cancelled());
    tokio::task::spawn_blocking(move || dropped_rx.recv_timeout(BOUND))
        .await
        .expect("join")
        .expect("the hanging build was dropped with the run");
    let built = engine.built();
    assert_eq!(
        built.len(),
        1,
        "one build started, the other waited for the slot: {built:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocking_work_in_one_build_does_not_stall_another_image() {
    let server = registry(&[], &[]);
    let specs = Specs::new();
    let slow = specs.in_registry(&server, "slow");
    let quick = specs.in_registry(&server, "quick");
    let engine = FakeEngine::new();
    let quick_building = Arc::new(AtomicBool::new(false));
    let slow_blocking = Arc::new(AtomicBool::new(false));
    let (pushed_tx, pushed_rx) = std::sync::mpsc::channel::<()>();
    let pushed_rx = Arc::new(Mutex::new(pushed_rx));
    // Once both builds run, the slow one blocks its thread (as hashing a large tree inline would) until the quick
    // image is pushing, which it starts once the slow one blocks. Each looks at the other's flag now and then
    // instead of being woken by it: a task woken from a thread that then blocks waits behind it (tokio runs it
    // next on that thread), and that would be the test's doing, not the workflow's.
    let (quick_flag, slow_flag) = (quick_building.clone(), slow_blocking.clone());
    engine.on_build(
        "/slow:",
        Arc::new(move |_| {
            let (quick, slow, pushed_rx) =
                (quick_flag.clone(), slow_flag.clone(), pushed_rx.clone());
            Box::pin(async move {
                until(&quick).await;
                slow.store(true, Ordering::SeqCst);
                let waited = pushed_rx.lock().expect("lock").recv_timeout(BOUND);
                waited.map_err(|_| {
                    berth_core::Error::new(ErrorKind::BuildFailed, "the other image never moved")
                })
            })
        }),
    );
    engine.on_build(
        "/quick:",
        Arc::new(move |_| {
            quick_building.store(true, Ordering::SeqCst);
            let slow = slow_blocking.clone();
            Box::pin(async move {
                until(&slow).await;
                Ok(())
            })
        }),
    );
    let pushed_tx = Mutex::new(pushed_tx);
    engine.on_push(
        "/quick:",
        Arc::new(move |_| {
            let _ = pushed_tx.lock().expect("lock").send(());
            Box::pin(async { Ok(()) })
        }),
    );
    let (context, recorder) = context(&engine, no_credentials());
    let units = units_of(&context, &[("slow", &slow), ("quick", &quick)]);
    let outcomes = bounded("run", run(&units, &context, &options(2)))
        .await
        .expect("run");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Pushed { .. })),
        "{outcomes:?}"
    );
    let lines = recorder.lines();
    let quick_pushing = lines
        .iter()
        .position(|l| l.contains("/quick:") && l.ends_with(": pushing"));
    let slow_pushing = lines
        .iter()
        .position(|l| l.contains("/slow:") && l.ends_with(": pushing"));
    assert!(
        matches!((quick_pushing, slow_pushing), (Some(q), Some(s)) if q < s),
        "the quick image's progress went on while the slow one blocked: {lines:?}"
    );
}

/// Returns once `flag` is set, looking every few milliseconds.
async fn until(flag: &AtomicBool) {
    while !flag.load(Ordering::SeqCst) {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// A `docker-credential-count` helper that appends each host it is asked about to `log`, and a Docker config
/// that names it for `hosts`.
fn counting_helper(dir: &Path, log: &Path, hosts: &[&str]) -> HashMap<String, String> {
    use std::os::unix::fs::PermissionsExt as _;
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let helper = bin.join("docker-credential-count");
    std::fs::write(
        &helper,
        format!(
            "#!/bin/sh\nread host\necho \"$host\" >> '{}'\necho '{{\"Username\": \"u\", \"Secret\": \"p\"}}'\n",
            log.display()
        ),
    )
    .expect("helper");
    std::fs::set_permissions(&helper, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let helpers: serde_json::Map<String, serde_json::Value> = hosts
        .iter()
        .map(|h| (h.to_string(), "count".into()))
        .collect();
    let config = dir.join("docker");
    std::fs::create_dir_all(&config).expect("config dir");
    std::fs::write(
        config.join("config.json"),
        serde_json::json!({ "credHelpers": helpers }).to_string(),
    )
    .expect("config");
    HashMap::from([
        ("HOME".to_string(), dir.display().to_string()),
        ("DOCKER_CONFIG".to_string(), config.display().to_string()),
        (
            "PATH".to_string(),
            format!("{}:/usr/bin:/bin", bin.display()),
        ),
    ])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_helper_runs_once_per_registry() {
    // The registry wants credentials for its checks too: the check, the builds' pulls and the pushes share one
    // lookup per registry.
    let server = FakeServer::tcp(|request| {
        if request.header("authorization") != Some("Basic dTpw") {
            return Answer::reply(
                "401 Unauthorized",
                "WWW-Authenticate: Basic realm=\"fake\"\r\n",
                b"",
            );
        }
        match request.target.as_str() {
            "/v2/" => Answer::reply("200 OK", "", b""),
            _ => Answer::reply("404 Not Found", "", b""),
        }
    });
    let home = tempfile::tempdir().expect("temp dir");
    let log = home.path().join("helper-runs");
    let vars = counting_helper(home.path(), &log, &[&server.addr, "base.example"]);
    let registries =
        Registries::with_resolver(Vec::new(), None, CredentialResolver::with_vars(vars))
            .expect("registries");
    let specs = Specs::new();
    let spec = |name: &str| {
        specs.write(
            &format!("{name}.yaml"),
            &format!(
                "name: {name}\nregistry: {}/team\nbase_image: base.example/os:1\n",
                server.addr
            ),
        )
    };
    let (a, b, c) = (spec("a"), spec("b"), spec("c"));
    let engine = FakeEngine::new();
    let (context, _) = context(&engine, registries);
    let units = units_of(&context, &[("a", &a), ("b", &b), ("c", &c)]);
    let outcomes = bounded("run", run(&units, &context, &options(3)))
        .await
        .expect("run");
    assert!(
        outcomes.iter().all(|o| matches!(o, Outcome::Pushed { .. })),
        "{outcomes:?}"
    );
    for call in engine.calls() {
        if let Call::Build { credentials, .. } = call {
            assert_eq!(credentials, ["base.example"]);
        }
    }
    let runs = std::fs::read_to_string(&log).expect("the helper ran");
    let mut hosts: Vec<&str> = runs.lines().collect();
    hosts.sort_unstable();
    let mut expected = vec!["base.example", server.addr.as_str()];
    expected.sort_unstable();
    assert_eq!(hosts, expected, "one helper run per registry");
}

/// `fail` is part of the fake's vocabulary: a build that fails with a kind other than BuildFailed keeps it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_failure_keeps_its_kind() {
    let specs = Specs::new();
    let lone = specs.write("lone.yaml", "name: lone\n");
    let engine = FakeEngine::new();
    engine.on_build("lone", fail(ErrorKind::Unsupported, "no cache mounts here"));
    let (context, recorder) = context(&engine, no_credentials());
    let units = units_of(&context, &[("lone", &lone)]);
    let outcomes = run(&units, &context, &options(1)).await.expect("run");
    match &outcomes[0] {
        Outcome::Failed(e) => {
            assert_eq!(e.kind(), ErrorKind::Unsupported);
            assert!(e.to_string().contains("building lone:"), "{e}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        recorder
            .lines()
            .iter()
            .any(|l| l == &format!("{}: building on fake", units[0].name)),
        "{:?}",
        recorder.lines()
    );
}
