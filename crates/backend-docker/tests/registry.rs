//! Push and pull against the authenticated test registry: a wrong password is `Unauthorized`, a right one
//! returns the digest the registry stored. Needs `scripts/env/up.sh`.

mod common;

use berth_backend_docker::DockerOptions;
use berth_core::engine::{ContainerEngine, Credentials, RemoveOptions, Secret, TransferOptions};
use berth_core::ErrorKind;
use common::{docker, engine, env, unique, Cleanup, Record};

#[tokio::test]
async fn a_wrong_password_is_unauthorized_and_a_right_one_returns_the_digest() {
    let Some(env) = env() else {
        return;
    };
    let engine = engine(DockerOptions::default()).await;
    let good = TransferOptions {
        credentials: Some(env.credentials()),
        insecure: false,
    };
    engine
        .pull(&env.busybox, &good, &Record::default())
        .await
        .expect("pulls the fixture with the right password");

    let repository = format!("{}/berth-test/{}", env.registry, unique("push"));
    let reference = format!("{repository}:1");
    let _cleanup = Cleanup(vec![reference.clone()]);
    engine.tag(&env.busybox, &reference).await.expect("tags");

    let bad = TransferOptions {
        credentials: Some(Credentials {
            password: Secret::new("not-the-password"),
            ..env.credentials()
        }),
        insecure: false,
    };
    let err = engine
        .push(&reference, &bad, &Record::default())
        .await
        .expect_err("the registry refuses the wrong password");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert!(!format!("{err:?}").contains("not-the-password"), "{err:?}");

    let err = engine
        .pull(&format!("{repository}:missing"), &bad, &Record::default())
        .await
        .expect_err("the registry refuses the wrong password");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");

    let record = Record::default();
    let pushed = engine
        .push(&reference, &good, &record)
        .await
        .expect("pushes with the right password");
    assert!(
        pushed.digest.starts_with("sha256:") && pushed.digest.len() == 71,
        "{pushed:?}"
    );
    let repo_digests = String::from_utf8_lossy(&docker(&[
        "image",
        "inspect",
        "--format",
        "{{join .RepoDigests \" \"}}",
        &reference,
    ]))
    .to_string();
    assert!(
        repo_digests.contains(&format!("{repository}@{}", pushed.digest)),
        "{repo_digests} vs {pushed:?}"
    );

    let err = engine
        .pull(&format!("{repository}:missing"), &good, &Record::default())
        .await
        .expect_err("no such tag");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");

    common::delete_manifest(&env, &repository, &pushed.digest);
    engine
        .remove(&reference, RemoveOptions::default())
        .await
        .expect("removes the local tag");
    let err = engine.inspect(&reference).await.expect_err("removed");
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
}
