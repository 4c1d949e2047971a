//! Docker-specific build behaviour on the real test daemon: which builder is chosen, secrets through berth's
//! BuildKit session, and how failed steps are reported. Needs `scripts/env/up.sh`.

mod common;

use berth_backend_docker::{Builder, DockerOptions, SelectedBuilder};
use berth_core::engine::{BuildOptions, ContainerEngine, RemoveOptions, TransferOptions};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Mount, PlanSecret, Step};
use berth_core::ErrorKind;
use common::{docker, engine, env, plan, run, unique, Cleanup, Record};

fn options(env: &common::TestEnv, tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.to_string()],
        credentials: vec![env.credentials()],
        ..BuildOptions::default()
    }
}

#[tokio::test]
async fn buildkit_is_chosen_when_the_daemon_has_it_and_classic_refuses_mounts() {
    let Some(env) = env() else {
        return;
    };
    let auto = engine(DockerOptions::default()).await;
    assert_eq!(
        auto.builder().await.expect("builder"),
        SelectedBuilder::BuildKit
    );
    let caps = auto.info().await.expect("info").capabilities;
    assert!(caps.cache_mounts && caps.secret_mounts, "{caps:?}");

    let classic = engine(DockerOptions {
        builder: Builder::Classic,
        ..DockerOptions::default()
    })
    .await;
    assert_eq!(
        classic.builder().await.expect("builder"),
        SelectedBuilder::Classic
    );
    assert!(
        !classic
            .info()
            .await
            .expect("info")
            .capabilities
            .cache_mounts
    );

    let cache = Mount::Cache {
        id: "berth-test".into(),
        target: "/cache".into(),
    };
    let mounting = plan(&env, vec![run("true", vec![cache])], vec![]);
    let tag = format!("berth-test/{}:1", unique("classic-refused"));
    let err = classic
        .build(&mounting, &options(&env, &tag), &Record::default())
        .await
        .expect_err("the classic builder cannot mount");
    assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");

    // Each builder really runs: the classic one prints ` ---> ` lines, BuildKit numbered vertexes.
    let plain = plan(
        &env,
        vec![run(
            &format!("echo built-$((6*7)) {}", unique("run")),
            vec![],
        )],
        vec![],
    );
    for (engine, expect_classic) in [(&classic, true), (&auto, false)] {
        let tag = format!("berth-test/{}:1", unique("builder"));
        let _cleanup = Cleanup(vec![tag.clone()]);
        let record = Record::default();
        let built = engine
            .build(&plain, &options(&env, &tag), &record)
            .await
            .expect("builds");
        assert!(built.id.starts_with("sha256:"), "{built:?}");
        let lines = record.lines();
        assert!(lines.iter().any(|l| l.contains("built-42")), "{lines:?}");
        let classic_lines = lines.iter().any(|l| l.starts_with(" ---> "));
        assert_eq!(classic_lines, expect_classic, "{lines:?}");
        assert_eq!(engine.inspect(&tag).await.expect("tagged").id, built.id);
    }
}

#[tokio::test]
async fn a_secret_is_visible_to_its_step_and_in_no_layer() {
    let Some(env) = env() else {
        return;
    };
    let engine = engine(DockerOptions::default()).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let value = unique("berth-secret-value");
    let secret_file = dir.path().join("token");
    std::fs::write(&secret_file, &value).expect("write secret");
    // The step proves it read the secret by its digest, so the value itself is never in the Dockerfile.
    let digest = {
        let out = std::process::Command::new("sha256sum")
            .arg(&secret_file)
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .next()
            .expect("digest")
            .to_string()
    };
    let target = "/run/secrets/token";
    let mut plan = plan(
        &env,
        vec![
            run(
                &format!("echo '{digest}  {target}' | sha256sum -c && echo secret-seen > /seen"),
                vec![Mount::Secret {
                    id: "token".into(),
                    target: target.into(),
                }],
            ),
            run(&format!("test ! -e {target} && cat /seen"), vec![]),
        ],
        vec![],
    );
    plan.secrets.push(PlanSecret {
        id: "token".into(),
        source: secret_file,
    });
    let tag = format!("berth-test/{}:1", unique("secret"));
    let _cleanup = Cleanup(vec![tag.clone()]);
    let mut opts = options(&env, &tag);
    opts.no_cache = true;
    let record = Record::default();
    engine
        .build(&plan, &opts, &record)
        .await
        .expect("builds with the secret");
    assert!(record.lines().iter().any(|l| l.contains("secret-seen")));

    let saved = docker(&["save", &tag]);
    assert!(saved.len() > 1000, "docker save gave {} bytes", saved.len());
    let mut archive = tar::Archive::new(&saved[..]);
    let mut layers = 0;
    for entry in archive.entries().expect("save is a tar") {
        let mut entry = entry.expect("entry");
        let path = entry.path().expect("path").display().to_string();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut entry, &mut bytes).expect("read");
        if path.ends_with("layer.tar") {
            layers += 1;
            let mut layer = tar::Archive::new(&bytes[..]);
            for file in layer.entries().expect("layer is a tar") {
                let mut file = file.expect("file");
                let name = file.path().expect("path").display().to_string();
                assert!(!name.contains("run/secrets/token"), "{path} holds {name}");
                let mut content = Vec::new();
                std::io::Read::read_to_end(&mut file, &mut content).expect("read");
                assert!(
                    !contains(&content, value.as_bytes()),
                    "{path}:{name} holds the secret"
                );
            }
        }
        assert!(
            !contains(&bytes, value.as_bytes()),
            "{path} holds the secret"
        );
    }
    assert!(layers >= 2, "found {layers} layers");
    assert!(
        !record.lines().iter().any(|l| l.contains(&value)),
        "the secret reached the progress"
    );
}

#[tokio::test]
async fn a_failing_step_is_a_build_failure_naming_the_step_and_its_output() {
    let Some(env) = env() else {
        return;
    };
    for builder in [Builder::Auto, Builder::Classic] {
        let engine = engine(DockerOptions {
            builder,
            ..DockerOptions::default()
        })
        .await;
        let marker = unique("marker");
        let plan = plan(
            &env,
            vec![
                Step::Copy(CopyStep {
                    sources: vec!["hello.txt".into()],
                    destination: "/hello.txt".into(),
                    chown: None,
                }),
                run(
                    &format!("cat /hello.txt && echo {marker} unauthorized not found && exit 3"),
                    vec![],
                ),
            ],
            vec![ContextEntry {
                path: "hello.txt".into(),
                source: ContextSource::Bytes(b"hello from the context\n".to_vec()),
            }],
        );
        let tag = format!("berth-test/{}:1", unique("fails"));
        let _cleanup = Cleanup(vec![tag.clone()]);
        let err = engine
            .build(&plan, &options(&env, &tag), &Record::default())
            .await
            .expect_err("the step fails");
        assert_eq!(err.kind(), ErrorKind::BuildFailed, "{builder:?}: {err}");
        let message = err.message();
        assert!(
            message.contains(&format!("RUN cat /hello.txt && echo {marker}")),
            "{message}"
        );
        assert!(message.contains("hello from the context"), "{message}");
        assert!(
            message.contains(&format!("{marker} unauthorized not found")),
            "{message}"
        );
        // forcerm: no container of the failed step is left behind.
        let containers = String::from_utf8_lossy(&docker(&[
            "ps",
            "-a",
            "--no-trunc",
            "--format",
            "{{.Command}}",
        ]))
        .to_string();
        assert!(
            !containers.contains(&marker),
            "{builder:?} left a container: {containers}"
        );
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn base_images_are_pulled_with_the_given_credentials_only() {
    let Some(env) = env() else {
        return;
    };
    let engine = engine(DockerOptions::default()).await;
    // BuildKit on dockerd prefers a local base image; a base only the registry has makes it pull.
    let creds = TransferOptions {
        credentials: Some(env.credentials()),
        insecure: false,
    };
    engine
        .pull(&env.busybox, &creds, &Record::default())
        .await
        .expect("pulls the fixture");
    let repository = format!("{}/berth-test/{}", env.registry, unique("base"));
    let base = format!("{repository}:1");
    engine.tag(&env.busybox, &base).await.expect("tags");
    let pushed = engine
        .push(&base, &creds, &Record::default())
        .await
        .expect("pushes");
    engine
        .remove(&base, RemoveOptions::default())
        .await
        .expect("untags");

    let mut plan = plan(&env, vec![run("true", vec![])], vec![]);
    plan.base_image = base.clone();
    let tag = format!("berth-test/{}:1", unique("no-creds"));
    let _cleanup = Cleanup(vec![tag.clone(), base.clone()]);
    let anonymous = BuildOptions {
        tags: vec![tag.clone()],
        ..BuildOptions::default()
    };
    let err = engine
        .build(&plan, &anonymous, &Record::default())
        .await
        .expect_err("the registry wants credentials");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    engine
        .build(&plan, &options(&env, &tag), &Record::default())
        .await
        .expect("builds with credentials");
    common::delete_manifest(&env, &repository, &pushed.digest);
}

#[tokio::test]
async fn host_networking_reaches_run_steps() {
    let Some(env) = env() else {
        return;
    };
    for builder in [Builder::Auto, Builder::Classic] {
        let engine = engine(DockerOptions {
            builder,
            ..DockerOptions::default()
        })
        .await;
        // docker0 exists only in the host's network namespace.
        let plan = plan(
            &env,
            vec![run(
                &format!(
                    "grep -q docker0 /proc/net/dev && echo {}",
                    unique("host-net")
                ),
                vec![],
            )],
            vec![],
        );
        let tag = format!("berth-test/{}:1", unique("net"));
        let _cleanup = Cleanup(vec![tag.clone()]);
        let mut opts = options(&env, &tag);
        let err = engine
            .build(&plan, &opts, &Record::default())
            .await
            .expect_err("the default network is not the host's");
        assert_eq!(err.kind(), ErrorKind::BuildFailed, "{builder:?}: {err}");
        opts.network = berth_core::engine::Network::Host;
        engine
            .build(&plan, &opts, &Record::default())
            .await
            .unwrap_or_else(|e| panic!("{builder:?}: host network: {e}"));
    }
}

#[tokio::test]
async fn an_unreadable_context_file_is_reported_as_such() {
    let Some(env) = env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("vanished.txt");
    for builder in [Builder::Auto, Builder::Classic] {
        let engine = engine(DockerOptions {
            builder,
            ..DockerOptions::default()
        })
        .await;
        let plan = plan(
            &env,
            vec![Step::Copy(CopyStep {
                sources: vec!["vanished.txt".into()],
                destination: "/".into(),
                chown: None,
            })],
            vec![ContextEntry {
                path: "vanished.txt".into(),
                source: ContextSource::File(missing.clone()),
            }],
        );
        let tag = format!("berth-test/{}:1", unique("vanished"));
        let _cleanup = Cleanup(vec![tag.clone()]);
        let err = engine
            .build(&plan, &options(&env, &tag), &Record::default())
            .await
            .expect_err("the context file is missing");
        assert_eq!(err.kind(), ErrorKind::NotFound, "{builder:?}: {err}");
        assert!(err.message().contains("vanished.txt"), "{builder:?}: {err}");
    }
}
