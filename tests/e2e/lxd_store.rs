//! What berth's LXD store keeps: a rebuild from the same inputs is the same image (same config, same digest), and
//! pruning drops old step-cache entries, the blobs only they held and the LXD base images berth imported, but never
//! what an image in the store or a running build uses.

use berth_backend_lxd::{LxdEngine, LxdOptions};
use berth_core::engine::{ContainerEngine, NoProgress};
use berth_core::plan::Step;
use berth_tests::conformance::support::{build_options, image_ref, plan, run, unique};
use berth_tests::env::TestEnv;

async fn engine() -> LxdEngine {
    LxdEngine::connect(LxdOptions::default())
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach LXD: {e}\n  run scripts/env/up.sh first (as root)")
        })
}

/// Waits until the wall clock is in a later second than now, so a build stamped with "now" would differ.
async fn next_second() {
    let second = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let start = second();
    while second() == start {
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cached_rebuild_is_the_same_image() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let engine = engine().await;
    let steps = |label: &str| {
        vec![
            Step::Env(vec![("BERTH_RUN".into(), label.to_string())]),
            run("cat /proc/sys/kernel/random/uuid > /nonce"),
        ]
    };
    let label = unique("same");
    let (cold_tag, warm_tag, other_tag) = (
        image_ref(env, "lxd-same", "cold"),
        image_ref(env, "lxd-same", "warm"),
        image_ref(env, "lxd-same", "other"),
    );
    let cold = engine
        .build(
            &plan(&env.busybox_image, steps(&label)),
            &build_options(env, &cold_tag),
            &NoProgress,
        )
        .await
        .expect("cold build");
    next_second().await;
    let warm = engine
        .build(
            &plan(&env.busybox_image, steps(&label)),
            &build_options(env, &warm_tag),
            &NoProgress,
        )
        .await
        .expect("cached build");
    let mut changed = steps(&label);
    changed.push(Step::Env(vec![("MORE".into(), "1".into())]));
    let other = engine
        .build(
            &plan(&env.busybox_image, changed),
            &build_options(env, &other_tag),
            &NoProgress,
        )
        .await
        .expect("changed build");
    let layers = |tag: String| {
        let engine = &engine;
        async move { engine.inspect(&tag).await.expect("inspect").layers }
    };
    assert_eq!(
        layers(warm_tag.clone()).await,
        layers(cold_tag.clone()).await,
        "the rebuild re-ran its step"
    );
    assert_eq!(
        warm.id, cold.id,
        "a fully cached rebuild from the same inputs made a different image"
    );
    assert_ne!(other.id, cold.id, "a changed config kept the old image");
    for tag in [cold_tag, warm_tag, other_tag] {
        let _ = engine.remove(&tag, Default::default()).await;
    }
}
