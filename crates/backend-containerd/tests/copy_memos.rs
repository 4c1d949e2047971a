//! What berth remembers about COPY steps between builds, on the real containerd of `scripts/env/up.sh`: the
//! sources' digests by file identity (`copy-digests`) and the layer each set of files made (`copy-layers`).
//! Both only save work: a file changed between builds is read again, and a wrong layer record has the layer
//! written anew, with the image as it must be either way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_core::engine::{BuildOptions, ContainerEngine, NoProgress, RemoveOptions};
use berth_core::plan::{BuildPlan, ContextEntry, ContextSource, CopyStep, Step};
use berth_tests::conformance::support::{build_options, checks, plan, run, unique};
use berth_tests::env::TestEnv;
use berth_tests::scratch_namespace::ScratchNamespace;

/// The racy window of berth's records, and a little more: a file older than this is trusted by its identity.
const SETTLE: Duration = Duration::from_millis(2_300);

async fn engine(env: &TestEnv, scratch: &ScratchNamespace) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        namespace: Some(scratch.namespace().to_string()),
        state_dir: Some(scratch.state().to_path_buf()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"))
}

/// COPY of `file` to /data.txt, then a RUN that checks it holds `expected`.
fn copy_plan(env: &TestEnv, file: &Path, expected: &str) -> BuildPlan {
    let mut copying = plan(
        &env.busybox_image,
        vec![
            Step::Copy(CopyStep {
                sources: vec!["data.txt".into()],
                destination: "/data.txt".into(),
                chown: None,
            }),
            run(checks(&[&format!(
                "test \"$(cat /data.txt)\" = {expected}"
            )])),
        ],
    );
    copying.context = vec![ContextEntry {
        path: "data.txt".into(),
        source: ContextSource::File(file.to_path_buf()),
    }];
    copying
}

fn options(env: &TestEnv, tag: &str, no_cache: bool) -> BuildOptions {
    BuildOptions {
        no_cache,
        ..build_options(env, tag)
    }
}

/// The diff ids of image `tag`'s layers.
async fn layers(engine: &ContainerdEngine, tag: &str) -> Vec<String> {
    engine
        .inspect(tag)
        .await
        .unwrap_or_else(|e| panic!("inspect {tag}: {e}"))
        .layers
}

/// The files of `folder` under the namespace's state folder (none when it is missing).
fn records(scratch: &ScratchNamespace, folder: &str) -> Vec<PathBuf> {
    let state = scratch.state().join(scratch.namespace());
    std::fs::read_dir(state.join(folder))
        .map(|entries| entries.flatten().map(|e| e.path()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_changed_between_builds_is_read_again() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-copy-digests");
    let engine = engine(env, &scratch).await;
    let files = tempfile::tempdir().expect("temp dir");
    let data = files.path().join("data.txt");
    let first = unique("first");
    std::fs::write(&data, &first).expect("write");
    std::thread::sleep(SETTLE);
    let tag = format!(
        "{}/berth-daemon-test/{}:v1",
        env.registry,
        unique("copy-digests")
    );
    engine
        .build(
            &copy_plan(env, &data, &first),
            &options(env, &tag, false),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("first build: {e}"));
    let one = layers(&engine, &tag).await;
    assert_eq!(
        records(&scratch, "copy-digests").len(),
        1,
        "the COPY's digests were recorded"
    );
    // the same size, other bytes, old enough that only its identity can tell it changed
    let second = first.replace("first", "later");
    assert_eq!(second.len(), first.len());
    std::fs::write(&data, &second).expect("write");
    std::thread::sleep(SETTLE);
    engine
        .build(
            &copy_plan(env, &data, &second),
            &options(env, &tag, false),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("build after the change: {e}"));
    let two = layers(&engine, &tag).await;
    assert_ne!(two, one, "the changed file was taken from the record");
    // nothing changed: the same layers again, from the cache
    engine
        .build(
            &copy_plan(env, &data, &second),
            &options(env, &tag, false),
            &NoProgress,
        )
        .await
        .unwrap_or_else(|e| panic!("build without a change: {e}"));
    assert_eq!(layers(&engine, &tag).await, two);
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_layer_record_costs_time_not_the_image() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-copy-layers");
    let engine = engine(env, &scratch).await;
    let files = tempfile::tempdir().expect("temp dir");
    let data = files.path().join("data.txt");
    let content = unique("layer");
    std::fs::write(&data, &content).expect("write");
    let tag = format!(
        "{}/berth-daemon-test/{}:v1",
        env.registry,
        unique("copy-layers")
    );
    let build = |no_cache| {
        let (engine, copying, options) = (
            &engine,
            copy_plan(env, &data, &content),
            options(env, &tag, no_cache),
        );
        async move { engine.build(&copying, &options, &NoProgress).await }
    };
    build(false)
        .await
        .unwrap_or_else(|e| panic!("first build: {e}"));
    let recorded = records(&scratch, "copy-layers");
    assert_eq!(recorded.len(), 1, "the COPY's layer was recorded");
    let record = recorded[0].clone();
    let right = std::fs::read_to_string(&record).expect("record");
    // the base image's layer: in the store, with a diff id of its own, so the record is believed until the tar
    // is hashed
    let copied_blob = right.split_whitespace().next().expect("digest").to_string();
    let (base_blob, base_diff_id) = scratch
        .content_label("containerd.io/uncompressed")
        .into_iter()
        .find_map(|(digest, diff_id)| {
            diff_id
                .filter(|_| digest != copied_blob)
                .map(|d| (digest, d))
        })
        .expect("the base image's layer blob");
    let wrong = [
        format!("{base_blob} 1 {base_diff_id}\n"),
        format!("sha256:{} 7 sha256:{}\n", "0".repeat(64), "1".repeat(64)),
    ];
    let copied_diff_id = right
        .split_whitespace()
        .nth(2)
        .expect("diff id")
        .to_string();
    for forged in wrong {
        std::fs::write(&record, &forged).expect("forge the record");
        build(true)
            .await
            .unwrap_or_else(|e| panic!("build with the record {forged:?}: {e}"));
        let built = layers(&engine, &tag).await;
        assert!(
            built.contains(&copied_diff_id),
            "the COPY's own layer, whatever the record said: {built:?}"
        );
        assert_eq!(
            std::fs::read_to_string(&record).expect("record"),
            right,
            "the record is put right"
        );
    }
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}
