//! The step cache's size bound on the real containerd of `scripts/env/up.sh`: a build drops the least recently
//! used records until the rest fit, and exactly their blobs stop being roots for containerd's collector.

use std::collections::HashMap;

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_core::engine::{BuildOptions, ContainerEngine, NoProgress, RemoveOptions};
use berth_core::plan::{Mount, RunStep, Step};
use berth_tests::conformance::support::{plan, run, Recorder};
use berth_tests::env::TestEnv;
use berth_tests::scratch_namespace::ScratchNamespace;

/// What a build said about pruning the step cache.
fn about_pruning(progress: &Recorder) -> Vec<String> {
    progress
        .lines()
        .into_iter()
        .filter(|l| l.starts_with("step cache:"))
        .collect()
}

/// Each step writes 1 MiB of random bytes: about 2 MiB on disk (the blob and the snapshot), so a 5 MiB bound
/// holds two steps and not three.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_drops_the_least_recently_used_records_past_the_size_bound() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-cache-bound");
    let engine = bounded(env, &scratch, "5MiB").await;
    let mut blob_of = HashMap::new();
    let build = |name: &'static str| build_one(env, &engine, &scratch, name);
    let (a, _) = build("a").await;
    let (b, _) = build("b").await;
    // a again, from the cache: now b is the least recently used
    let (again, lines) = build("a").await;
    assert_eq!(again, a, "the second build of a did not use the cache");
    assert!(
        about_pruning(&lines).is_empty(),
        "{:?}",
        about_pruning(&lines)
    );
    let (c, _) = build("c").await;
    blob_of.insert("a", a.clone());
    blob_of.insert("b", b.clone());
    blob_of.insert("c", c.clone());
    assert_rooted(&scratch, &blob_of, &["a", "b", "c"], &[]);
    // three steps (about 6 MiB) are past the bound: the next build drops b alone, the least recently used
    let (d, lines) = build("d").await;
    blob_of.insert("d", d);
    assert_rooted(&scratch, &blob_of, &["a", "c", "d"], &["b"]);
    let said = about_pruning(&lines);
    assert!(
        said.len() == 1
            && said[0].contains(" 1 least recently used record")
            && said[0].contains("MiB"),
        "{said:?}"
    );
    for name in ["a", "b", "c", "d"] {
        let _ = engine
            .remove(&tag(env, name), RemoveOptions::default())
            .await;
    }
}

/// Builds on one namespace take no lock: while one build runs a step on top of a step it took from the cache,
/// another build's prune (with a bound that fits nothing) drops every record but that one, whose blob the
/// running build holds in its lease; the running build then ends well.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prune_keeps_the_records_a_running_build_uses() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-cache-in-use");
    let unbounded = bounded(env, &scratch, "off").await;
    let tiny = bounded(env, &scratch, "1").await;
    let (used, _) = build_one(env, &unbounded, &scratch, "used").await;
    let (unused, _) = build_one(env, &unbounded, &scratch, "unused").await;
    // the step "used" again, from the cache, then a step that waits for the test
    let gated = plan(
        &env.busybox_image,
        vec![
            run(random_step("used")),
            Step::Run(RunStep {
                command:
                    "touch /gate/started; while [ ! -e /gate/go ]; do sleep 0.1; done; rm /gate/*"
                        .into(),
                mounts: vec![Mount::Cache {
                    id: "gate".into(),
                    target: "/gate".into(),
                }],
            }),
        ],
    );
    let gated_options = options(env, "gated");
    let running = unbounded.build(&gated, &gated_options, &NoProgress);
    let meanwhile = async {
        let gate = wait_for_gate(&scratch).await;
        let other = build_one(env, &tiny, &scratch, "other").await;
        let rooted = scratch.rooted();
        std::fs::write(gate.join("go"), "").expect("open the gate");
        (other, rooted)
    };
    let (built, ((other, _), rooted)) = tokio::join!(running, meanwhile);
    built.unwrap_or_else(|e| panic!("the gated build: {e}"));
    assert!(
        rooted.contains(&used),
        "the record the running build used was dropped: {rooted:?}"
    );
    assert!(!rooted.contains(&unused), "{rooted:?}");
    assert!(rooted.contains(&other), "{rooted:?}");
    for name in ["used", "unused", "other", "gated"] {
        let _ = unbounded
            .remove(&tag(env, name), RemoveOptions::default())
            .await;
    }
}

/// The host folder of cache `gate` once a step has started in it (the build fails the test if it never does).
async fn wait_for_gate(scratch: &ScratchNamespace) -> std::path::PathBuf {
    let caches = scratch.state().join(scratch.namespace()).join("cache");
    // not a time limit on berth: a build that never reaches the gate has failed, and the join reports why
    for _ in 0..3000 {
        let gate = std::fs::read_dir(&caches)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .find(|p| p.join("started").exists());
        if let Some(gate) = gate {
            return gate;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no step reached the gate in {}", caches.display());
}

/// An engine on `scratch` with step cache bound `max`.
async fn bounded(env: &TestEnv, scratch: &ScratchNamespace, max: &str) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        namespace: Some(scratch.namespace().to_string()),
        state_dir: Some(scratch.state().to_path_buf()),
        step_cache_max: Some(max.into()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"))
}

fn random_step(name: &str) -> String {
    format!("head -c 1048576 /dev/urandom > /random-{name}")
}

/// Builds tagged [`tag`] `name`.
fn options(env: &TestEnv, name: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag(env, name)],
        credentials: vec![env.credentials()],
        ..BuildOptions::default()
    }
}

fn tag(env: &TestEnv, name: &str) -> String {
    format!(
        "{}/berth-daemon-test/cache-bound-{name}-{}:v1",
        env.registry,
        std::process::id()
    )
}

/// Builds image `name`, one step writing 1 MiB of random bytes; returns the blob of its layer (found through
/// the layer's diff id) and what the build said.
async fn build_one(
    env: &TestEnv,
    engine: &ContainerdEngine,
    scratch: &ScratchNamespace,
    name: &str,
) -> (String, Recorder) {
    let steps = vec![run(format!(
        "head -c 1048576 /dev/urandom > /random-{name}"
    ))];
    let lines = Recorder::default();
    engine
        .build(
            &plan(&env.busybox_image, steps),
            &options(env, name),
            &lines,
        )
        .await
        .unwrap_or_else(|e| panic!("build {name}: {e}"));
    let layers = engine
        .inspect(&tag(env, name))
        .await
        .expect("inspect")
        .layers;
    let diff_id = layers.last().expect("a layer").clone();
    let blob = scratch
        .content_label("containerd.io/uncompressed")
        .into_iter()
        .find(|(_, value)| value.as_deref() == Some(diff_id.as_str()))
        .map(|(digest, _)| digest)
        .unwrap_or_else(|| panic!("no blob of {diff_id}"));
    (blob, lines)
}

/// The blobs of `kept` are the roots of the namespace, those of `dropped` are not.
fn assert_rooted(
    scratch: &ScratchNamespace,
    blob_of: &HashMap<&str, String>,
    kept: &[&str],
    dropped: &[&str],
) {
    let mut rooted = scratch.rooted();
    rooted.sort();
    let mut expected: Vec<String> = kept.iter().map(|name| blob_of[name].clone()).collect();
    expected.sort();
    assert_eq!(rooted, expected, "roots, kept {kept:?}");
    for name in kept {
        assert!(
            rooted.contains(&blob_of[name]),
            "{name}'s blob lost its root: {rooted:?}"
        );
    }
    for name in dropped {
        assert!(
            !rooted.contains(&blob_of[name]),
            "{name}'s blob is still a root: {rooted:?}"
        );
    }
}
