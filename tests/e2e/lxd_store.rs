//! What berth's LXD store keeps: a rebuild from the same inputs is the same image (same config, same digest), and
//! pruning drops old step-cache entries, the blobs only they held and the LXD base images berth imported, but never
//! what an image in the store or a running build uses.

use berth_backend_lxd::{LxdEngine, LxdOptions};
use berth_core::engine::{ContainerEngine, NoProgress};
use berth_core::plan::Step;
use std::path::Path;
use std::time::Duration;

use berth_tests::conformance::support::{
    build_options, image_ref, plan, run, transfer_options, unique,
};
use berth_tests::env::TestEnv;

/// LXD with a state folder of its own (removed with the folder): each build prunes its state folder, and the
/// shared one's caches are other tests'.
async fn private_engine() -> (tempfile::TempDir, LxdEngine) {
    let state = tempfile::tempdir().expect("state folder");
    let options = LxdOptions {
        state_dir: Some(state.path().to_path_buf()),
        ..LxdOptions::default()
    };
    let engine = LxdEngine::connect(options).await.unwrap_or_else(|e| {
        panic!("cannot reach LXD: {e}\n  run scripts/env/up.sh first (as root)")
    });
    (state, engine)
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
    let (_state, engine) = private_engine().await;
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
    let _ = engine.prune(Duration::ZERO).await;
}

/// The names in folder `dir`.
fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// Whether LXD has an image with `alias`.
fn lxd_has(alias: &str) -> bool {
    std::process::Command::new("lxc")
        .args(["image", "info", alias])
        .output()
        .expect("lxc")
        .status
        .success()
}

/// Pruning, on a state folder of its own (the shared one's caches are other tests'): while a build runs nothing
/// goes; then an LXD image imported for a base whose name was removed goes, with that base's manifest and
/// config, while recent step-cache entries, the layers they hold and a kept image stay; with no age limit the
/// step cache and the base a build pulled go too, the kept image still pushes whole, and a build after it all
/// pulls and imports again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruning_drops_what_nothing_uses_and_keeps_the_rest() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let (state, engine) = private_engine().await;
    let blobs = || names_in(&state.path().join("oci/blobs/sha256")).len();
    let label = unique("prune");
    // a base of this test's own, so this state folder is the one that imports it into LXD
    let base_tag = image_ref(env, "lxd-prune-base", "v1");
    let kept_tag = image_ref(env, "lxd-prune-kept", "v1");
    let build = |base: &str, command: String, tag: &str| {
        let (engine, plan, options) = (
            &engine,
            plan(base, vec![run(command)]),
            build_options(env, tag),
        );
        async move { engine.build(&plan, &options, &NoProgress).await }
    };
    build(
        &env.busybox_image,
        format!("echo {label} > /base"),
        &base_tag,
    )
    .await
    .expect("the base");
    engine
        .push(&base_tag, &transfer_options(env), &NoProgress)
        .await
        .expect("push the base");
    build(&base_tag, format!("echo {label} > /kept"), &kept_tag)
        .await
        .expect("the kept image");
    // this test's base, and busybox's too when no other state folder imported it before
    let imported = names_in(&state.path().join("imported"));
    assert!(!imported.is_empty(), "no import record");
    assert!(
        imported.iter().all(|a| lxd_has(a)),
        "{imported:?} not in LXD"
    );

    // a running build holds the state folder: nothing goes
    let before = blobs();
    let sleeper = plan(
        &env.busybox_image,
        vec![run(format!("echo {label}; sleep 900"))],
    );
    let sleeper_tag = image_ref(env, "lxd-prune-sleeper", "v1");
    let sleeper_options = build_options(env, &sleeper_tag);
    let running = engine.build(&sleeper, &sleeper_options, &NoProgress);
    let prune_meanwhile = async {
        // the build's folder in this state folder (other tests' containers are on the server too), made once
        // the build holds the state folder
        while engine
            .leftovers()
            .await
            .expect("leftovers")
            .folders
            .is_empty()
        {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        engine.prune(Duration::ZERO).await.expect("prune")
    };
    let meanwhile = tokio::select! {
        result = running => panic!("the 900-second build ended first: {result:?}"),
        pruned = prune_meanwhile => pruned,
    };
    assert!(!meanwhile.ran, "pruned during a build: {meanwhile:?}");
    assert_eq!(blobs(), before);
    assert!(imported.iter().all(|a| lxd_has(a)));

    // the base's name goes: its manifest, config and LXD image go, recent cache entries keep their layers
    engine
        .remove(&base_tag, Default::default())
        .await
        .expect("remove the base's name");
    let hour = engine
        .prune(Duration::from_secs(3600))
        .await
        .expect("prune");
    assert!(hour.ran);
    assert_eq!(hour.step_entries, 0, "{hour:?}");
    assert_eq!(hour.blobs, 2, "the base's manifest and config: {hour:?}");
    assert_eq!(blobs(), before - 2);
    let went: Vec<&String> = imported
        .iter()
        .filter(|a| hour.lxd_images.contains(a))
        .collect();
    assert_eq!(went.len(), 1, "the base's LXD image goes: {hour:?}");
    assert!(!lxd_has(went[0]), "{} still in LXD", went[0]);
    assert!(
        !state.path().join(format!("{}.lock", went[0])).exists(),
        "its import lock stays"
    );
    assert!(hour.bases.is_empty(), "{hour:?}");

    // no age limit: the step cache and the busybox base this state folder's build pulled go; the kept image stays
    let all = engine.prune(Duration::ZERO).await.expect("prune");
    assert!(all.step_entries >= 3, "{all:?}");
    assert!(
        all.bases.iter().any(|b| b.starts_with(&env.busybox_image)),
        "{all:?}"
    );
    assert!(
        imported.iter().all(|a| !lxd_has(a)),
        "{imported:?} still in LXD"
    );
    let kept = engine.inspect(&kept_tag).await.expect("the kept image");
    assert_eq!(
        blobs(),
        2 + kept.layers.len(),
        "only the kept image's manifest, config and layers stay"
    );
    engine
        .push(&kept_tag, &transfer_options(env), &NoProgress)
        .await
        .expect("the kept image pushes whole");
    assert!(engine.inspect(&base_tag).await.is_err());

    // a build afterwards pulls and imports again
    let again_tag = image_ref(env, "lxd-prune-again", "v1");
    build(&base_tag, format!("echo {label} > /again"), &again_tag)
        .await
        .expect("a build after pruning");
    let _ = engine.prune(Duration::ZERO).await;
    for tag in [kept_tag, again_tag] {
        let _ = engine.remove(&tag, Default::default()).await;
    }
    let _ = engine.prune(Duration::ZERO).await;
    assert!(
        names_in(&state.path().join("imported")).is_empty(),
        "LXD images left"
    );
}

/// Extended attribute `name` of `path` in the last layer of `tag` in the OCI layout under `state`.
fn last_layer_xattr(state: &Path, tag: &str, path: &str, name: &str) -> Option<Vec<u8>> {
    let file = std::fs::File::open(last_layer(state, tag)).expect("layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let key = format!("SCHILY.xattr.{name}");
    for entry in archive.entries().expect("entries") {
        let mut entry = entry.expect("entry");
        if entry.path().expect("path").to_string_lossy() != path {
            continue;
        }
        let found = entry.pax_extensions().expect("pax").and_then(|records| {
            records
                .filter_map(|r| r.ok())
                .find(|r| r.key() == Ok(key.as_str()))
                .map(|r| r.value_bytes().to_vec())
        });
        return found;
    }
    panic!("{path} not in the layer")
}

/// The owners and names of the entries of the last layer of `tag` in the OCI layout under `state`.
fn last_layer_owners(state: &Path, tag: &str) -> Vec<(String, u64, u64)> {
    let file = std::fs::File::open(last_layer(state, tag)).expect("layer");
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    archive
        .entries()
        .expect("entries")
        .map(|e| {
            let e = e.expect("entry");
            let header = e.header();
            (
                e.path().expect("path").to_string_lossy().into_owned(),
                header.uid().expect("uid"),
                header.gid().expect("gid"),
            )
        })
        .collect()
}

/// The file of the last layer of `tag` in the OCI layout under `state`.
fn last_layer(state: &Path, tag: &str) -> std::path::PathBuf {
    let oci = state.join("oci");
    let read_json = |digest: &str| -> serde_json::Value {
        let path = oci
            .join("blobs/sha256")
            .join(digest.trim_start_matches("sha256:"));
        serde_json::from_slice(&std::fs::read(path).expect("blob")).expect("json")
    };
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(oci.join("index.json")).expect("index"))
            .expect("json");
    let manifest = index["manifests"]
        .as_array()
        .expect("manifests")
        .iter()
        .find(|d| d["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .map(|d| read_json(d["digest"].as_str().expect("digest")))
        .expect("the tag in index.json");
    let layer = manifest["layers"]
        .as_array()
        .expect("layers")
        .last()
        .expect("a layer")["digest"]
        .as_str()
        .expect("digest")
        .trim_start_matches("sha256:")
        .to_string();
    oci.join("blobs/sha256").join(layer)
}

/// Build containers are unprivileged: a RUN step sees a user namespace, its files are on the host under shifted
/// ids, and the layer holds the owners the container saw (root as 0, a chown to 1000 as 1000), also for a step
/// with a cache mount (its container is restarted with the mount, since LXD cannot hot-plug into it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unprivileged_layers_hold_the_containers_owners() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    let (state, engine) = private_engine().await;
    let label = unique("owners");
    let tag = image_ref(env, "lxd-owners", "v1");
    let cache_id = unique("owners-cache");
    let steps = vec![
        run(format!(
            "! grep -Eq '^ +0 +0 +4294967295$' /proc/self/uid_map && echo {label} > /by-root && \
             mkdir -p /srv/user && echo u > /srv/user/f && chown -R 1000:1000 /srv/user"
        )),
        Step::Run(berth_core::plan::RunStep {
            command: format!(
                "cat /berth-cache/old/f && echo {label} >> /berth-cache/old/f && echo {label} > /berth-cache/x \
                 && echo {label} > /with-cache"
            ),
            mounts: vec![berth_core::plan::Mount::Cache {
                id: cache_id.clone(),
                target: "/berth-cache".into(),
            }],
        }),
    ];
    let mut cached = steps.clone();
    cached.pop();
    let first_tag = image_ref(env, "lxd-owners", "first");
    engine
        .build(
            &plan(&env.busybox_image, cached),
            &build_options(env, &first_tag),
            &NoProgress,
        )
        .await
        .expect("the build of the first step");
    let owners = last_layer_owners(state.path(), &first_tag);
    let of = |owners: &[(String, u64, u64)], path: &str| {
        owners
            .iter()
            .find(|(p, _, _)| p.trim_end_matches('/') == path)
            .map(|(_, uid, gid)| (*uid, *gid))
            .unwrap_or_else(|| panic!("{path} not in the layer: {owners:?}"))
    };
    assert_eq!(of(&owners, "by-root"), (0, 0));
    assert_eq!(of(&owners, "srv/user"), (1000, 1000));
    assert_eq!(of(&owners, "srv/user/f"), (1000, 1000));
    // a cache a privileged build (the host's root) filled, private to its owner as uv's and apt's files are:
    // the unprivileged container's root must still read and write it
    let old = state.path().join("caches").join(&cache_id).join("old");
    std::fs::create_dir_all(&old).expect("make the old cache");
    std::fs::write(old.join("f"), "old\n").expect("write the old cache");
    for (path, mode) in [(&old, 0o700), (&old.join("f"), 0o600)] {
        std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))
            .expect("chmod");
    }
    // the first step from the cache, unpacked before the container starts; the second runs with a cache mount
    engine
        .build(
            &plan(&env.busybox_image, steps),
            &build_options(env, &tag),
            &NoProgress,
        )
        .await
        .expect("the build with a cache mount");
    let owners = last_layer_owners(state.path(), &tag);
    assert_eq!(of(&owners, "with-cache"), (0, 0));
    assert!(
        owners
            .iter()
            .all(|(p, _, _)| !p.starts_with("berth-cache/")),
        "the cache mount's contents reached the layer: {owners:?}"
    );

    // file capabilities the container's root sets are written as any root's (version 2), not for its namespace
    let caps_tag = image_ref(env, "lxd-owners", "caps");
    let set = "python3 -c \"import os; open('/capfile', 'w').close(); \
               os.setxattr('/capfile', 'security.capability', bytes.fromhex('0100000200200000000000000000000000000000'))\"";
    engine
        .build(
            &plan(&env.python_image, vec![run(set)]),
            &build_options(env, &caps_tag),
            &NoProgress,
        )
        .await
        .expect("the build setting a file capability");
    assert_eq!(
        last_layer_xattr(state.path(), &caps_tag, "capfile", "security.capability"),
        Some(hex_bytes("0100000200200000000000000000000000000000")),
        "cap_net_raw+ep as version 2"
    );
    for tag in [first_tag, tag, caps_tag] {
        let _ = engine.remove(&tag, Default::default()).await;
    }
    let _ = engine.prune(Duration::ZERO).await;
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).expect("hex"))
        .collect()
}
