//! Pushing an image of many layers, whose blobs go up several at once: the registry ends with the whole image, and
//! one upload that fails fails the push with no manifest written; a blob whose source label is already at
//! containerd's size limit still pushes, and a pull adds its repository to the blobs' sources. Against the real
//! containerd and registry of `scripts/env/up.sh`; what the registry holds is read with skopeo, never through the
//! engine under test.

use std::time::Duration;

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_core::engine::{
    BuildOptions, ContainerEngine, Credentials, NoProgress, RemoveOptions, TransferOptions,
};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Step};
use berth_registry::{RegistryOptions, RetryPolicy};
use berth_tests::conformance::registry;
use berth_tests::conformance::support::plan;
use berth_tests::env::TestEnv;
use berth_tests::faults::{Class, Fault, FaultPlan, FaultProxy};
use berth_tests::scratch_namespace::ScratchNamespace;

/// More layers than blobs go up at once, so the bounded concurrency is exercised past its first round.
const COPY_LAYERS: usize = 9;

/// An engine in a namespace of its own whose registry client never retries, so one failed upload is final.
async fn engine(env: &TestEnv, scratch: &ScratchNamespace) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        namespace: Some(scratch.namespace().to_string()),
        state_dir: Some(scratch.state().to_path_buf()),
        registry: RegistryOptions {
            retry: RetryPolicy::never(),
            ..RegistryOptions::default()
        },
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"))
}

/// Builds the busybox fixture plus [`COPY_LAYERS`] COPY layers of distinct content, tagged `tag`.
async fn build_layers(env: &TestEnv, engine: &ContainerdEngine, tag: &str) {
    let token = std::process::id();
    let mut built = plan(
        &env.busybox_image,
        (0..COPY_LAYERS)
            .map(|i| {
                Step::Copy(CopyStep {
                    sources: vec![format!("f{i}")],
                    destination: format!("/layers/{i}/"),
                    chown: None,
                })
            })
            .collect(),
    );
    built.context = (0..COPY_LAYERS)
        .map(|i| ContextEntry {
            path: format!("f{i}/data"),
            // distinct bytes per layer and per run: nothing is skipped as already in the registry
            source: ContextSource::Bytes(
                format!("layer {i} of {token}\n")
                    .repeat(20_000)
                    .into_bytes(),
            ),
        })
        .collect();
    let options = BuildOptions {
        tags: vec![tag.to_string()],
        credentials: vec![env.credentials()],
        ..BuildOptions::default()
    };
    engine
        .build(&built, &options, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("build {tag}: {e}"));
}

fn transfer(credentials: Credentials) -> TransferOptions {
    TransferOptions {
        credentials: Some(credentials),
        insecure: true,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_many_layer_push_leaves_the_whole_image() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let scratch = ScratchNamespace::new(env, "berth-test-push-many");
    let engine = engine(env, &scratch).await;
    let tag = format!(
        "{}/berth-push-many/whole-{}:v1",
        env.registry,
        std::process::id()
    );
    build_layers(env, &engine, &tag).await;
    let local = engine.inspect(&tag).await.expect("inspect");
    let pushed = engine
        .push(&tag, &transfer(env.credentials()), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("push: {e}"));
    let image = registry::download(env, &tag);
    assert_eq!(registry::remote_digest(env, &tag), pushed.digest);
    let _ = registry::delete(env, &tag);
    let _ = engine.remove(&tag, RemoveOptions { force: true }).await;
    assert_eq!(
        image.layers.len(),
        local.layers.len(),
        "the registry's image has a different number of layers than the local one"
    );
    assert!(
        image.layers.len() > COPY_LAYERS,
        "{} layers",
        image.layers.len()
    );
    for i in 0..COPY_LAYERS {
        let needle = format!("layer {i} of {}\n", std::process::id());
        assert!(
            !image.parts_containing(needle.as_bytes()).is_empty(),
            "the pushed image lacks COPY layer {i}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failed_upload_fails_the_push_and_writes_no_manifest() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    // the first blob upload through the proxy is cut mid-body; the rest pass
    let proxy = FaultProxy::start(
        &env.registry,
        FaultPlan {
            fault: Fault::Reset,
            class: Class::BlobUpload,
            times: 1,
        },
    )
    .await
    .expect("start the fault proxy");
    let scratch = ScratchNamespace::new(env, "berth-test-push-fail");
    let engine = engine(env, &scratch).await;
    let repository = format!("berth-push-many/failed-{}", std::process::id());
    let tag = format!("{}/{repository}:v1", env.registry);
    build_layers(env, &engine, &tag).await;
    let through = format!("{}/{repository}:v1", proxy.host());
    engine.tag(&tag, &through).await.expect("tag");
    let credentials = Credentials {
        registry: proxy.host(),
        ..env.credentials()
    };
    let pushed = tokio::time::timeout(
        Duration::from_secs(300),
        engine.push(&through, &transfer(credentials), &NoProgress),
    )
    .await
    .expect("the push hung");
    let injected = proxy.injected();
    let on_registry = registry::try_remote_digest(env, &tag);
    for name in [&tag, &through] {
        let _ = engine.remove(name, RemoveOptions { force: true }).await;
    }
    assert_eq!(injected, 1, "the proxy cut no upload");
    let err = match pushed {
        Ok(p) => panic!("the push succeeded ({}) though an upload failed", p.digest),
        Err(e) => e,
    };
    assert!(err.hint().is_some(), "no fix in {err}");
    assert!(
        on_registry.is_err(),
        "the registry has a manifest for {tag} after a failed push"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blob_named_by_many_repositories_still_pushes() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let namespace = "berth-test-push-sources";
    let scratch = ScratchNamespace::new(env, namespace);
    let engine = engine(env, &scratch).await;
    let repository = format!("berth-push-many/sources-{}", std::process::id());
    let tag = format!("{}/{repository}:v1", env.registry);
    build_layers(env, &engine, &tag).await;
    // every blob already names repositories up to containerd's 4096-byte label limit, as after many pushes
    let key = format!("containerd.io/distribution.source.{}", env.registry);
    let mut gone = (0..).map(|i| format!("berth-push-many/gone-{i:06}"));
    let mut value = gone.next().unwrap_or_default();
    for next in gone {
        if key.len() + value.len() + 1 + next.len() > 4096 {
            break;
        }
        value = format!("{value},{next}");
    }
    assert!(key.len() + value.len() + 1 + repository.len() > 4096);
    for (digest, _) in scratch.content_label(&key) {
        scratch.set_content_label(&digest, &key, &value);
    }
    let pushed = engine
        .push(&tag, &transfer(env.credentials()), &NoProgress)
        .await;
    let labels = scratch.content_label(&key);
    let on_registry = registry::try_remote_digest(env, &tag);
    let _ = registry::delete(env, &tag);
    let _ = engine.remove(&tag, RemoveOptions { force: true }).await;
    let pushed = pushed.unwrap_or_else(|e| panic!("push: {e}"));
    assert_eq!(on_registry.ok().as_deref(), Some(pushed.digest.as_str()));
    let sources: Vec<&String> = labels.iter().filter_map(|(_, v)| v.as_ref()).collect();
    assert!(
        sources
            .iter()
            .any(|v| v.ends_with(&format!(",{repository}"))),
        "no blob names {repository} as its source: {sources:?}"
    );
    for value in sources {
        assert!(
            key.len() + value.len() <= 4096,
            "a label of {} bytes",
            key.len() + value.len()
        );
    }
}

/// Pulling an image the content store has from another repository adds that repository to the blobs' source
/// label instead of replacing the ones named: a later push to either can mount from both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pull_adds_its_repository_to_the_blobs_sources() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let namespace = "berth-test-pull-sources";
    let scratch = ScratchNamespace::new(env, namespace);
    let engine = engine(env, &scratch).await;
    let transfer = transfer(env.credentials());
    let copy_repository = format!("berth-push-many/pulled-{}", std::process::id());
    let copy = format!("{}/{copy_repository}:v1", env.registry);
    engine
        .pull(&env.busybox_image, &transfer, &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("pull {}: {e}", env.busybox_image));
    engine.tag(&env.busybox_image, &copy).await.expect("tag");
    let pushed = engine.push(&copy, &transfer, &NoProgress).await;
    let _ = engine.remove(&copy, RemoveOptions { force: true }).await;
    let pulled = match pushed {
        Ok(_) => engine.pull(&copy, &transfer, &NoProgress).await,
        Err(e) => Err(e),
    };
    let key = format!("containerd.io/distribution.source.{}", env.registry);
    let labels = scratch.content_label(&key);
    for name in [&copy, &env.busybox_image] {
        let _ = engine.remove(name, RemoveOptions { force: true }).await;
    }
    let _ = registry::delete(env, &copy);
    pulled.unwrap_or_else(|e| panic!("push and pull {copy}: {e}"));
    let fixture_repository = env
        .busybox_image
        .split_once('/')
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .map(|(repository, _)| repository)
        .expect("the fixture's repository");
    let layers_naming_both = labels
        .iter()
        .filter_map(|(_, value)| value.as_deref())
        .filter(|value| {
            let repos: Vec<&str> = value.split(',').collect();
            repos.contains(&fixture_repository) && repos.contains(&copy_repository.as_str())
        })
        .count();
    assert!(
        layers_naming_both > 0,
        "no blob names both {fixture_repository} and {copy_repository}: {labels:?}"
    );
}
