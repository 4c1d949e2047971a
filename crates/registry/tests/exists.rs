//! `exists` and `exists_many` against the real authenticated registry of `scripts/env/up.sh`.

mod common;

use std::time::Instant;

use berth_core::engine::{Credentials, Secret};
use berth_core::ErrorKind;
use berth_registry::Existence;
use common::{authed_client, client, env, image, skopeo_copy, skopeo_digest, unique_repo, Home};

#[tokio::test]
async fn a_fixture_image_is_present_with_skopeos_digest() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let found = authed_client(&home)
        .exists(&image(&env.busybox_image))
        .await;
    let Existence::Present { digest } = found else {
        panic!("{} should be present: {found:?}", env.busybox_image);
    };
    assert_eq!(digest, skopeo_digest(&env.busybox_image));
}

#[tokio::test]
async fn a_missing_tag_and_a_missing_repository_are_absent() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let client = authed_client(&home);
    let busybox = image(&env.busybox_image);
    let missing_tag = busybox.clone_with_tag("no-such-tag");
    let found = client.exists(&missing_tag).await;
    assert!(matches!(found, Existence::Absent), "{found:?}");
    let missing_repo = image(&format!("{}/{}:1", env.registry, unique_repo("missing")));
    let found = client.exists(&missing_repo).await;
    assert!(matches!(found, Existence::Absent), "{found:?}");
}

trait WithTag {
    fn clone_with_tag(&self, tag: &str) -> Self;
}

impl WithTag for berth_core::reference::ImageRef {
    fn clone_with_tag(&self, tag: &str) -> Self {
        berth_core::reference::ImageRef {
            tag: Some(tag.to_string()),
            digest: None,
            ..self.clone()
        }
    }
}

#[tokio::test]
async fn a_wrong_password_is_unauthorized_and_names_the_user_not_the_secret() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let wrong = env.wrong_credentials();
    let client = client(home.resolver(&[]).with_credentials(wrong.clone()));
    let found = client.exists(&image(&env.busybox_image)).await;
    let Existence::Unknown(err) = found else {
        panic!("a wrong password cannot decide existence: {found:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    eprintln!("{err}");
    let text = format!("{err}\n{err:?}");
    assert!(
        !text.contains(wrong.password.expose()),
        "the secret leaked: {text}"
    );
    assert!(
        !text.contains(env.registry_password().expose()),
        "the secret leaked: {text}"
    );
    assert!(
        text.contains(&format!("user `{}`", env.registry_user)),
        "{text}"
    );
    assert!(text.contains(&env.registry), "{text}");
    // the credentials came from the caller, so the fix is to correct those (a login would not be used)
    assert!(
        err.hint()
            .is_some_and(|h| h.contains("given to berth") && h.contains(&env.registry)),
        "{text}"
    );
    assert_eq!(err.engine(), Some("registry"));
    assert_eq!(err.operation(), Some("check"));
}

#[tokio::test]
async fn no_credentials_is_unauthorized_and_says_where_it_looked() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let found = client(home.resolver(&[]))
        .exists(&image(&env.busybox_image))
        .await;
    let Existence::Unknown(err) = found else {
        panic!("an anonymous check of an authenticated registry cannot decide: {found:?}");
    };
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    eprintln!("{err}");
    let text = err.to_string();
    assert!(text.contains("without credentials"), "{text}");
    assert!(
        text.contains(&home.docker_config().display().to_string()),
        "{text}"
    );
    assert!(text.contains("docker login"), "{text}");
}

#[tokio::test]
async fn environment_credentials_for_the_host_are_used() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let resolver = home.resolver(&[
        ("BERTH_REGISTRY_USERNAME", &env.registry_user),
        ("BERTH_REGISTRY_PASSWORD", env.registry_password().expose()),
        ("BERTH_REGISTRY_HOST", &env.registry),
    ]);
    let found = client(resolver).exists(&image(&env.busybox_image)).await;
    assert!(found.is_present(), "{found:?}");
    // the same variables for another host do not apply here
    let resolver = home.resolver(&[
        ("BERTH_REGISTRY_USERNAME", &env.registry_user),
        ("BERTH_REGISTRY_PASSWORD", env.registry_password().expose()),
        ("BERTH_REGISTRY_HOST", "elsewhere.example"),
    ]);
    let found = client(resolver).exists(&image(&env.busybox_image)).await;
    assert!(
        matches!(&found, Existence::Unknown(e) if e.kind() == ErrorKind::Unauthorized),
        "{found:?}"
    );
}

#[tokio::test]
async fn exists_many_answers_a_hundred_references_in_order() {
    let Some(env) = env() else {
        return;
    };
    let repo = format!("{}/{}", env.registry, unique_repo("many"));
    // 50 present tags, made with skopeo one after the other (docker-registry 2.8 answers 500 "invalid
    // checksum digest format" to reads racing concurrent tag writes in one repository), 50 absent ones,
    // interleaved
    let present: Vec<String> = (0..50).map(|i| format!("{repo}:p{i}")).collect();
    skopeo_copy(&env.busybox_image, &present[0]);
    for target in &present[1..] {
        skopeo_copy(&present[0], target);
    }
    let refs: Vec<_> = (0..100)
        .map(|i| {
            if i % 2 == 0 {
                image(&present[i / 2])
            } else {
                image(&format!("{repo}:a{i}"))
            }
        })
        .collect();
    let home = Home::new();
    let client = authed_client(&home);
    let expected_digest = skopeo_digest(&env.busybox_image);
    let started = Instant::now();
    let answers = client.exists_many(&refs, 16).await;
    eprintln!(
        "exists_many over {} refs: {:?}",
        refs.len(),
        started.elapsed()
    );
    assert_eq!(answers.len(), refs.len());
    for (i, (reference, answer)) in refs.iter().zip(&answers).enumerate() {
        if i % 2 == 0 {
            assert_eq!(
                answer.digest(),
                Some(expected_digest.as_str()),
                "{reference}: {answer:?}"
            );
        } else {
            assert!(
                matches!(answer, Existence::Absent),
                "{reference}: {answer:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_explicit_credential_for_another_registry_is_not_sent() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let elsewhere = Credentials {
        registry: "elsewhere.example".into(),
        username: env.registry_user.clone(),
        password: Secret::new(env.registry_password().expose()),
    };
    let found = client(home.resolver(&[]).with_credentials(elsewhere))
        .exists(&image(&env.busybox_image))
        .await;
    assert!(
        matches!(&found, Existence::Unknown(e) if e.kind() == ErrorKind::Unauthorized),
        "{found:?}"
    );
}
