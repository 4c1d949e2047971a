//! Local image behaviours: what the engine says about itself, and inspect/tag/remove with their error kinds.

use berth_core::engine::{ContainerEngine, RemoveOptions};
use berth_core::ErrorKind;

use super::support::{
    build_ok, build_options, expect_kind, image_ref, inspect_ok, plan, run, unique, Cleanup,
};
use crate::env::TestEnv;

/// Behaviour 0: `info` answers with the engine's own name, a version and the endpoint it reached; `capabilities`,
/// asked first (an engine may answer it without its full report), says what `info` says.
pub async fn info_describes_engine(engine: &dyn ContainerEngine, _env: &TestEnv) {
    let capabilities = engine
        .capabilities()
        .await
        .unwrap_or_else(|e| panic!("{} capabilities: {e}", engine.name()));
    let info = engine
        .info()
        .await
        .unwrap_or_else(|e| panic!("{} info: {e}", engine.name()));
    assert_eq!(info.engine, engine.name(), "info names another engine");
    assert!(
        !info.version.trim().is_empty(),
        "info has no version: {info:?}"
    );
    assert!(
        !info.endpoint.trim().is_empty(),
        "info has no endpoint: {info:?}"
    );
    assert_eq!(
        capabilities, info.capabilities,
        "capabilities() and info() disagree"
    );
    eprintln!("{info:?}");
}

/// Behaviour 8: `tag` adds a name to the same image; `inspect` by either name shows one id and both names; removing one name
/// leaves the other; removing the last one removes the image (`inspect` is then [`ErrorKind::NotFound`]). Tagging
/// or removing a reference that does not exist is [`ErrorKind::NotFound`].
pub async fn tag_inspect_remove(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let first = image_ref(env, "tags", "first");
    let second = image_ref(env, "tags-other", "second");
    let plan = plan(
        &env.busybox_image,
        vec![run(format!("echo {} > /x", unique("content")))],
    );
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &first)).await;

    cleanup.image(&second);
    engine
        .tag(&first, &second)
        .await
        .unwrap_or_else(|e| panic!("tag {first} {second}: {e}"));
    let by_first = inspect_ok(engine, &first).await;
    let by_second = inspect_ok(engine, &second).await;
    assert_eq!(by_first.id, by_second.id, "the new tag names another image");
    for name in [&first, &second] {
        assert!(
            by_second.tags.contains(name),
            "inspect {second}: tags {:?} lack {name}",
            by_second.tags
        );
    }

    engine
        .remove(&second, RemoveOptions::default())
        .await
        .unwrap_or_else(|e| panic!("remove {second}: {e}"));
    expect_kind(
        engine.inspect(&second).await,
        ErrorKind::NotFound,
        "inspect of a removed tag",
    );
    let left = inspect_ok(engine, &first).await;
    assert_eq!(left.id, by_first.id, "removing one tag changed the other");
    assert!(
        !left.tags.contains(&second),
        "the removed tag is still listed: {:?}",
        left.tags
    );

    engine
        .remove(&first, RemoveOptions::default())
        .await
        .unwrap_or_else(|e| panic!("remove {first}: {e}"));
    expect_kind(
        engine.inspect(&first).await,
        ErrorKind::NotFound,
        "inspect after removing the last tag",
    );

    let missing = image_ref(env, "never-built", "v1");
    cleanup.image(&second);
    expect_kind(
        engine.tag(&missing, &second).await,
        ErrorKind::NotFound,
        "tag of an image that does not exist",
    );
    expect_kind(
        engine.remove(&missing, RemoveOptions::default()).await,
        ErrorKind::NotFound,
        "remove of an image that does not exist",
    );
}

/// Behaviour 9a: `inspect` of an image the engine does not have is [`ErrorKind::NotFound`], with or without a registry host
/// in the name.
pub async fn inspect_missing_is_not_found(engine: &dyn ContainerEngine, env: &TestEnv) {
    for reference in [
        image_ref(env, "never-built", "v1"),
        format!("berth-conformance/{}:v1", unique("never-built")),
    ] {
        expect_kind(
            engine.inspect(&reference).await,
            ErrorKind::NotFound,
            &format!("inspect {reference}"),
        );
    }
}
