//! RUN mounts: secrets (which must reach the step and no layer), cache directories (which must outlive a build),
//! helper-image and context bind mounts (which flytekit-style plans use for uv and lock files).
//!
//! An engine that declares no support for secret or cache mounts must refuse such a plan with
//! [`ErrorKind::Unsupported`]; the behaviour then checks exactly that, it does not skip.

use berth_core::engine::{ContainerEngine, NoProgress};
use berth_core::plan::{
    ContextEntry, ContextSource, HelperImage, Mount, PlanSecret, RunStep, Step,
};
use berth_core::ErrorKind;

use super::registry;
use super::support::{
    build_ok, build_options, checks, expect_kind, image_ref, plan, run, transfer_options, unique,
    Cleanup,
};
use crate::env::TestEnv;

fn run_with(command: String, mounts: Vec<Mount>) -> Step {
    Step::Run(RunStep { command, mounts })
}

/// The engine's declared capabilities (`info` must work).
async fn capabilities(engine: &dyn ContainerEngine) -> berth_core::engine::Capabilities {
    engine
        .info()
        .await
        .unwrap_or_else(|e| panic!("info: {e}"))
        .capabilities
}

fn sha256_hex(data: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Behaviour 5: A secret mount: the RUN step reads the secret (it compares its SHA-256, so the value itself is in no command
/// line, Dockerfile or history), later steps do not see it, and after a push no part of the image in the registry
/// (manifest, config, any decompressed layer) contains the value — while a canary the step wrote is found there,
/// proving the search reads the layers. Without `secret_mounts`, the build must be [`ErrorKind::Unsupported`].
pub async fn secret_mount_reaches_step_not_image(engine: &dyn ContainerEngine, env: &TestEnv) {
    let caps = capabilities(engine).await;
    let mut cleanup = Cleanup::new(engine, env);
    let dir = tempfile::tempdir().expect("temp dir");
    let value = format!(
        "berth-secret-{}",
        std::fs::read_to_string("/proc/sys/kernel/random/uuid")
            .map(|u| u.trim().replace('-', ""))
            .unwrap_or_else(|_| unique("value"))
    );
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, &value).expect("write secret");
    let canary = unique("canary");
    let tag = image_ref(env, "secret", "v1");
    let mut plan = plan(
        &env.busybox_image,
        vec![
            run_with(
                checks(&[
                    &format!(
                        "test \"$(sha256sum < /run/secrets/berth_secret | cut -d\" \" -f1)\" = {}",
                        sha256_hex(value.as_bytes())
                    ),
                    &format!("echo {canary} > /canary"),
                ]),
                vec![Mount::Secret {
                    id: "berth_secret".into(),
                    target: "/run/secrets/berth_secret".into(),
                }],
            ),
            // An empty mount-point stub may remain (older BuildKit leaves one); the content must not.
            run(checks(&["test ! -s /run/secrets/berth_secret"])),
        ],
    );
    plan.secrets = vec![PlanSecret {
        id: "berth_secret".into(),
        source: secret_file,
    }];

    if !caps.secret_mounts {
        cleanup.image(&tag);
        expect_kind(
            engine
                .build(&plan, &build_options(env, &tag), &NoProgress)
                .await,
            ErrorKind::Unsupported,
            "build with a secret mount on an engine that declares secret_mounts = false",
        );
        return;
    }

    build_ok(engine, &mut cleanup, &plan, &build_options(env, &tag)).await;
    cleanup.pushed(&tag);
    engine
        .push(&tag, &transfer_options(env), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("push {tag}: {e}"));
    let image = registry::download(env, &tag);
    let found = image.parts_containing(canary.as_bytes());
    assert!(
        found.iter().any(|p| p.starts_with("layer ")),
        "the canary the secret step wrote is in no layer ({found:?}): the layer search is broken"
    );
    use base64::Engine as _;
    for (form, needle) in [
        ("plain", value.clone()),
        (
            "base64",
            base64::engine::general_purpose::STANDARD.encode(&value),
        ),
    ] {
        let leaks = image.parts_containing(needle.as_bytes());
        assert!(
            leaks.is_empty(),
            "the secret value ({form}) is in the pushed image: {leaks:?}"
        );
    }
}

/// Behaviour 6: A cache mount outlives a build: a first build leaves a file in the cache, a second build (whose RUN step is
/// different, so it runs again) finds it; the cached file is in neither image. Without `cache_mounts`, the build
/// must be [`ErrorKind::Unsupported`].
pub async fn cache_mount_persists_between_builds(engine: &dyn ContainerEngine, env: &TestEnv) {
    let caps = capabilities(engine).await;
    let mut cleanup = Cleanup::new(engine, env);
    let id = unique("cache-id");
    let token = unique("cached");
    let mount = || Mount::Cache {
        id: id.clone(),
        target: "/berth-cache".into(),
    };
    let first = plan(
        &env.busybox_image,
        vec![
            run_with(
                checks(&[
                    "test -d /berth-cache",
                    "test ! -e /berth-cache/seen",
                    &format!("echo {token} > /berth-cache/seen"),
                ]),
                vec![mount()],
            ),
            run(checks(&["test ! -e /berth-cache/seen"])),
        ],
    );
    let second = plan(
        &env.busybox_image,
        vec![
            run_with(
                checks(&[&format!("test \"$(cat /berth-cache/seen)\" = {token}")]),
                vec![mount()],
            ),
            run(checks(&["test ! -e /berth-cache/seen"])),
        ],
    );
    let first_tag = image_ref(env, "cache-mount", "first");
    let second_tag = image_ref(env, "cache-mount", "second");

    if !caps.cache_mounts {
        cleanup.image(&first_tag);
        expect_kind(
            engine
                .build(&first, &build_options(env, &first_tag), &NoProgress)
                .await,
            ErrorKind::Unsupported,
            "build with a cache mount on an engine that declares cache_mounts = false",
        );
        return;
    }
    build_ok(
        engine,
        &mut cleanup,
        &first,
        &build_options(env, &first_tag),
    )
    .await;
    if !caps.caches_persist {
        // Declared: the cache is mounted but not kept (rootless Podman after another user made buildah's cache
        // folder). The next build starts with an empty cache, nothing lands in the image, and the build says so.
        let empty = plan(
            &env.busybox_image,
            vec![run_with(
                checks(&["test -d /berth-cache", "test ! -e /berth-cache/seen"]),
                vec![mount()],
            )],
        );
        let options = build_options(env, &second_tag);
        cleanup.image_all(&options.tags);
        let progress = super::support::Recorder::default();
        if let Err(e) = engine.build(&empty, &options, &progress).await {
            panic!(
                "{} build with an unkept cache failed: {e}\n{}",
                engine.name(),
                progress.lines().join("\n")
            );
        }
        let warned = progress.warnings();
        assert!(
            warned
                .iter()
                .any(|w| w.contains("cannot keep build caches") && w.contains("fix:")),
            "{} declares caches_persist = false but its build did not warn with a fix: {warned:?}",
            engine.name()
        );
        return;
    }
    build_ok(
        engine,
        &mut cleanup,
        &second,
        &build_options(env, &second_tag),
    )
    .await;
}

/// Behaviour 10: Helper-image and context bind mounts, as flytekit-style plans use them (uv from its image, lock files from
/// the context): the step sees the helper image's file and the context file, runs the helper's binary, and neither
/// lands in the image. The helper image comes from the authenticated test registry, so build credentials must
/// reach helper pulls too. `Capabilities` has no flag for these mounts (every plan from a spec uses them), so an
/// engine that cannot bind-mount fails this behaviour rather than passing it with an `Unsupported` refusal.
pub async fn image_and_context_mounts(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let token = unique("bind");
    let mut plan = plan(
        &env.busybox_image,
        vec![
            run_with(
                checks(&[
                    "/opt/berth-uv --version | grep -q \"^uv \"",
                    &format!("grep -qx {token} /tmp/berth-bind.txt"),
                ]),
                vec![
                    Mount::Image {
                        alias: "uvhelper".into(),
                        source: "/uv".into(),
                        target: "/opt/berth-uv".into(),
                    },
                    Mount::Context {
                        source: "bind.txt".into(),
                        target: "/tmp/berth-bind.txt".into(),
                    },
                ],
            ),
            // Empty mount-point stubs are tolerated (older BuildKit leaves them); content is not.
            run(checks(&[
                "test ! -s /opt/berth-uv",
                "test ! -s /tmp/berth-bind.txt",
            ])),
        ],
    );
    plan.helper_images = vec![HelperImage {
        alias: "uvhelper".into(),
        reference: env.uv_image.clone(),
    }];
    plan.context = vec![ContextEntry {
        path: "bind.txt".into(),
        source: ContextSource::Bytes(format!("{token}\n").into_bytes()),
    }];
    let tag = image_ref(env, "bind-mounts", "v1");
    let caps = capabilities(engine).await;
    if !caps.run_mounts {
        cleanup.image(&tag);
        expect_kind(
            engine
                .build(&plan, &build_options(env, &tag), &NoProgress)
                .await,
            ErrorKind::Unsupported,
            "build with image and context mounts on an engine that declares run_mounts = false",
        );
        return;
    }
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &tag)).await;
}

/// Marker the long step prints once it runs, so the test knows the engine is inside the step. The command spells
/// it `berth-step-"started"`, so the step's description (which progress reports too) never contains it.
const STARTED: &str = "berth-step-started";
/// How long the follow-up build may take before the behaviour calls the engine stuck. A hang, not a speed limit:
/// the build is two trivial busybox steps.
const STUCK_AFTER: std::time::Duration = std::time::Duration::from_secs(300);

/// Behaviour 16: A build cancelled mid-step (the caller drops the future, as Ctrl-C in berth does) leaves the engine
/// usable: no tag is set, and a new build using the same cache mount (when the engine has cache mounts) completes
/// instead of waiting on a lock the cancelled step held. (buildah 1.28 never releases a `sharing=locked` cache of a
/// cancelled step, which is why the Podman backend renders cache mounts as shared.)
pub async fn cancelled_build_leaves_engine_usable(engine: &dyn ContainerEngine, env: &TestEnv) {
    let caps = capabilities(engine).await;
    let mut cleanup = Cleanup::new(engine, env);
    let id = unique("cancel-cache");
    let mounts = || {
        if caps.cache_mounts {
            vec![Mount::Cache {
                id: id.clone(),
                target: "/berth-cache".into(),
            }]
        } else {
            Vec::new()
        }
    };
    let long = plan(
        &env.busybox_image,
        vec![run_with(
            format!("echo {} berth-step-\"started\"; sleep 900", unique("run")),
            mounts(),
        )],
    );
    let cancelled_tag = image_ref(env, "cancelled", "v1");
    cleanup.image(&cancelled_tag);
    let progress = super::support::Recorder::default();
    let options = build_options(env, &cancelled_tag);
    let build = engine.build(&long, &options, &progress);
    let watch = async {
        while !progress.lines().iter().any(|l| l.contains(STARTED)) {
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        }
    };
    tokio::select! {
        result = build => panic!("the 900-second step ended first: {result:?}\n{}", progress.lines().join("\n")),
        _ = tokio::time::timeout(STUCK_AFTER, watch) => {}
    }
    assert!(
        progress.lines().iter().any(|l| l.contains(STARTED)),
        "the long step never started:\n{}",
        progress.lines().join("\n")
    );
    // The build future is dropped here: the cancellation under test.
    expect_kind(
        engine.inspect(&cancelled_tag).await,
        ErrorKind::NotFound,
        "inspect of the tag a cancelled build would have set",
    );

    let after = plan(
        &env.busybox_image,
        vec![
            run_with(
                checks(&[&format!("echo {} > /dev/null", unique("after"))]),
                mounts(),
            ),
            run("true"),
        ],
    );
    let after_tag = image_ref(env, "after-cancel", "v1");
    let options = build_options(env, &after_tag);
    let next = build_ok(engine, &mut cleanup, &after, &options);
    if tokio::time::timeout(STUCK_AFTER, next).await.is_err() {
        panic!(
            "{}: a build after a cancelled one made no progress in {STUCK_AFTER:?}: the cancelled step still holds \
             the cache mount or the engine",
            engine.name()
        );
    }
}

/// Behaviour 18: Two builds at once that mount the same cache both succeed: the tools berth runs on caches (apt
/// above all) give up instead of waiting when another process holds their lock, so an engine must let one build
/// at a time use a cache (BuildKit's `sharing=locked`, containerd's cache lock, the `flock` Podman steps take).
/// The step here behaves like apt: it takes a lock in the cache without waiting (an atomic `mkdir`), and fails if
/// it is held. It runs on the Debian fixture, as apt steps do (the Podman lock needs util-linux's `flock`).
pub async fn concurrent_builds_share_a_cache(engine: &dyn ContainerEngine, env: &TestEnv) {
    let caps = capabilities(engine).await;
    if !caps.cache_mounts {
        // behaviour 9 checks that such an engine refuses cache mounts
        println!(
            "{} declares no cache mounts: nothing to share (behaviour 9 checks the refusal)",
            engine.name()
        );
        return;
    }
    let (mut one, mut two) = (Cleanup::new(engine, env), Cleanup::new(engine, env));
    let id = unique("shared-cache");
    let build = |n: usize| {
        plan(
            &env.python_image,
            vec![run_with(
                checks(&[
                    &format!("echo {} build {n}", unique("concurrent")),
                    "mkdir /berth-cache/tool.lock",
                    "sleep 5",
                    "rmdir /berth-cache/tool.lock",
                ]),
                vec![Mount::Cache {
                    id: id.clone(),
                    target: "/berth-cache".into(),
                }],
            )],
        )
    };
    let (first, second) = (build(1), build(2));
    let first_options = build_options(env, &image_ref(env, "concurrent", "one"));
    let second_options = build_options(env, &image_ref(env, "concurrent", "two"));
    let (a, b) = tokio::join!(
        build_ok(engine, &mut one, &first, &first_options),
        build_ok(engine, &mut two, &second, &second_options),
    );
    assert_ne!(a.id, b.id, "two different plans built one image");
}
