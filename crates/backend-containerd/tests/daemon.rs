//! The backend against the real containerd of `scripts/env/up.sh`: pulling through berth's registry client,
//! image records, and that nothing berth creates for an operation outlives it.

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_core::engine::{ContainerEngine, NoProgress, RemoveOptions, TransferOptions};
use berth_core::ErrorKind;
use berth_tests::env::TestEnv;

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
    let env = TestEnv::get();
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
