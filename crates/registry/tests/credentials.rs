//! Credentials where users keep them (Docker config, credential helpers, Podman's auth file), checked by
//! asking the real registry, and `login` writing a config the docker CLI accepts.

mod common;

use std::process::Command;

use berth_core::engine::Secret;
use berth_core::ErrorKind;
use berth_registry::{login, CredentialOrigin, Existence};
use common::{client, env, image, skopeo_copy, unique_repo, Home};

fn auth(user: &str, password: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

fn write(path: &std::path::Path, text: &str) {
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

/// A helper that knows the test registry's credentials and nothing else, and records `store` input.
fn fake_helper(home: &Home, name: &str) {
    let env = common::TestEnv::get();
    let stored = home.path().join(format!("{name}-stored.json"));
    home.helper(
        name,
        &format!(
            r#"#!/bin/sh
case "$1" in
get)
  read -r server
  if [ "$server" = "{registry}" ]; then
    printf '{{"ServerURL":"%s","Username":"{user}","Secret":"{password}"}}' "$server"
  else
    echo "credentials not found in native keychain"
    exit 1
  fi ;;
store) cat > "{stored}" ;;
*) exit 2 ;;
esac
"#,
            registry = env.registry,
            user = env.registry_user,
            password = env.registry_password().expose(),
            stored = stored.display(),
        ),
    );
}

#[tokio::test]
async fn docker_config_auths_are_used_under_any_key_spelling() {
    let Some(env) = env() else {
        return;
    };
    for key in [env.registry.clone(), format!("http://{}/v1/", env.registry)] {
        let home = Home::new();
        write(
            &home.docker_config(),
            &format!(
                r#"{{"auths": {{"{key}": {{"auth": "{}"}}}}}}"#,
                auth(&env.registry_user, env.registry_password().expose())
            ),
        );
        let resolver = home.resolver(&[]);
        let found = resolver
            .resolve(&env.registry)
            .expect("resolve")
            .expect("found");
        assert_eq!(
            found.origin,
            CredentialOrigin::AuthFile {
                path: home.docker_config(),
                key: key.clone()
            }
        );
        let answer = client(resolver).exists(&image(&env.busybox_image)).await;
        assert!(answer.is_present(), "{key}: {answer:?}");
    }
}

#[tokio::test]
async fn an_explicit_config_path_and_docker_config_dir_are_honoured() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let elsewhere = home.path().join("spec-registry-config.json");
    write(
        &elsewhere,
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            env.registry,
            auth(&env.registry_user, env.registry_password().expose())
        ),
    );
    let answer = client(home.resolver(&[]).docker_config(&elsewhere))
        .exists(&image(&env.busybox_image))
        .await;
    assert!(answer.is_present(), "{answer:?}");
    let dir = elsewhere.parent().expect("dir").join("docker-config-dir");
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::copy(&elsewhere, dir.join("config.json")).expect("copy");
    let resolver = home.resolver(&[("DOCKER_CONFIG", &dir.display().to_string())]);
    assert!(client(resolver)
        .exists(&image(&env.busybox_image))
        .await
        .is_present());
}

#[tokio::test]
async fn a_cred_helper_is_asked_before_auths_and_says_not_found_for_others() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    fake_helper(&home, "berthtest");
    // a wrong password in auths: the helper must win
    write(
        &home.docker_config(),
        &format!(
            r#"{{"credHelpers": {{"{0}": "berthtest", "other.example": "berthtest"}},
                "auths": {{"{0}": {{"auth": "{1}"}}}}}}"#,
            env.registry,
            auth(&env.registry_user, "wrong")
        ),
    );
    let resolver = home.resolver(&[]);
    let found = resolver
        .resolve(&env.registry)
        .expect("resolve")
        .expect("found");
    assert_eq!(
        found.origin,
        CredentialOrigin::Helper {
            helper: "berthtest".into(),
            config: home.docker_config()
        }
    );
    assert!(resolver
        .resolve("other.example")
        .expect("not found is no error")
        .is_none());
    let answer = client(resolver).exists(&image(&env.busybox_image)).await;
    assert!(answer.is_present(), "{answer:?}");
}

#[tokio::test]
async fn a_creds_store_is_the_last_docker_resort_and_a_missing_one_is_a_clear_error() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    fake_helper(&home, "berthstore");
    write(
        &home.docker_config(),
        r#"{"credsStore": "berthstore", "auths": {"127.0.0.2:1": {}}}"#,
    );
    let answer = client(home.resolver(&[]))
        .exists(&image(&env.busybox_image))
        .await;
    assert!(answer.is_present(), "{answer:?}");

    write(&home.docker_config(), r#"{"credsStore": "not-installed"}"#);
    let err = home
        .resolver(&[])
        .resolve(&env.registry)
        .expect_err("missing helper");
    assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err}");
    assert!(
        err.to_string().contains("docker-credential-not-installed"),
        "{err}"
    );
}

#[tokio::test]
async fn podmans_auth_file_is_used() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let auth_file = home.path().join("run/containers/auth.json");
    write(
        &auth_file,
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "{}"}}}}}}"#,
            env.registry,
            auth(&env.registry_user, env.registry_password().expose())
        ),
    );
    let resolver = home.resolver(&[]);
    let found = resolver
        .resolve(&env.registry)
        .expect("resolve")
        .expect("found");
    assert_eq!(
        found.origin,
        CredentialOrigin::AuthFile {
            path: auth_file.clone(),
            key: env.registry.clone()
        }
    );
    assert!(client(resolver)
        .exists(&image(&env.busybox_image))
        .await
        .is_present());
    // REGISTRY_AUTH_FILE replaces the default locations
    let moved = home.path().join("elsewhere.json");
    std::fs::rename(&auth_file, &moved).expect("move");
    let resolver = home.resolver(&[("REGISTRY_AUTH_FILE", &moved.display().to_string())]);
    assert!(client(resolver)
        .exists(&image(&env.busybox_image))
        .await
        .is_present());
}

#[tokio::test]
async fn login_writes_a_config_docker_pulls_with_and_keeps_other_keys() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let dir = home.path().join("docker");
    let config = dir.join("config.json");
    write(
        &config,
        r#"{"psFormat": "table {{.ID}}", "auths": {"other.example": {"auth": "eDp5"}}}"#,
    );
    let origin = login(
        &env.registry,
        &env.registry_user,
        env.registry_password(),
        Some(&config),
    )
    .expect("login");
    assert_eq!(
        origin,
        CredentialOrigin::AuthFile {
            path: config.clone(),
            key: env.registry.clone()
        }
    );
    let written: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&config).expect("read")).expect("json");
    assert_eq!(written["psFormat"], "table {{.ID}}");
    assert_eq!(written["auths"]["other.example"]["auth"], "eDp5");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&config)
            .expect("stat")
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
    }
    // berth reads it back, and so does the docker CLI
    let resolver = home.resolver(&[]).docker_config(&config);
    assert!(client(resolver)
        .exists(&image(&env.busybox_image))
        .await
        .is_present());
    // a copy under a name of our own, so removing it afterwards cannot disturb anyone using the fixture
    let ours = format!("{}/{}:1", env.registry, unique_repo("login"));
    skopeo_copy(&env.busybox_image, &ours);
    let pulled = Command::new("docker")
        .arg("--config")
        .arg(&dir)
        .args(["pull", "-q", &ours])
        .output()
        .expect("run docker");
    assert!(
        pulled.status.success(),
        "docker pull with the config berth wrote failed: {}",
        String::from_utf8_lossy(&pulled.stderr)
    );
    let _ = Command::new("docker").args(["rmi", &ours]).output();
}

#[tokio::test]
async fn login_goes_to_the_creds_store_when_one_is_configured() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    fake_helper(&home, "berthstore");
    write(&home.docker_config(), r#"{"credsStore": "berthstore"}"#);
    let origin = home
        .resolver(&[])
        .login(&env.registry, "someone", &Secret::new("pw"))
        .expect("login");
    assert!(
        matches!(origin, CredentialOrigin::Helper { ref helper, .. } if helper == "berthstore"),
        "{origin:?}"
    );
    let stored: serde_json::Value = serde_json::from_slice(
        &std::fs::read(home.path().join("berthstore-stored.json"))
            .expect("helper got the credentials"),
    )
    .expect("json");
    assert_eq!(stored["ServerURL"], env.registry.as_str());
    assert_eq!(stored["Username"], "someone");
    assert_eq!(stored["Secret"], "pw");
    let config = std::fs::read_to_string(home.docker_config()).expect("config");
    assert!(
        !config.contains("pw"),
        "no secret in the config when a store is used: {config}"
    );
    let found = client(home.resolver(&[]))
        .exists(&image(&env.busybox_image))
        .await;
    // the fake store answers with the real test credentials regardless of what it was given
    assert!(matches!(found, Existence::Present { .. }), "{found:?}");
}

#[tokio::test]
async fn check_login_accepts_good_and_refuses_wrong_credentials() {
    let Some(env) = env() else {
        return;
    };
    let home = Home::new();
    let good = client(home.resolver(&[]).with_credentials(env.credentials()));
    good.check_login(&env.registry)
        .await
        .expect("valid credentials");
    let wrong = client(home.resolver(&[]).with_credentials(env.wrong_credentials()));
    let err = wrong
        .check_login(&env.registry)
        .await
        .expect_err("wrong password");
    assert_eq!(err.kind(), ErrorKind::Unauthorized, "{err}");
    assert_eq!(err.operation(), Some("login"));
    let none = client(home.resolver(&[]));
    let err = none
        .check_login(&env.registry)
        .await
        .expect_err("nothing to check");
    assert_eq!(err.kind(), ErrorKind::InvalidSpec, "{err}");
}
