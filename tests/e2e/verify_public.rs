//! `berth verify-public` against real registries: the public one of `scripts/env/up.sh` (no authentication, as a
//! public repository is to a cluster without pull secrets) and the authenticated one, which must read as private
//! even when berth has valid credentials for it, because an anonymous check never uses them. skopeo is the
//! independent witness of what was pushed.

use std::path::Path;
use std::process::Command;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use berth_tests::berth_with;
use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn verify_public(dir: &Path, args: &[&str], envs: &[(&str, &str)]) -> Run {
    let mut all = vec!["verify-public"];
    all.extend_from_slice(args);
    let out = berth_with(dir, &all, envs, "");
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn skopeo(args: &[&str]) -> String {
    let out = Command::new("skopeo")
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("skopeo (installed by scripts/env/up.sh): {e}"));
    assert!(
        out.status.success(),
        "skopeo {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The busybox fixture copied from the authenticated registry to the public one under a tag of its own,
/// deleted again when dropped.
struct PublicImage {
    reference: String,
    digest: String,
}

impl PublicImage {
    fn push(env: &TestEnv) -> PublicImage {
        let tag = unique("verify");
        let reference = format!("{}/public/busybox:{tag}", env.public_registry);
        let dir = tempfile::tempdir().expect("temp dir");
        let digest_file = dir.path().join("digest");
        let digest_arg = digest_file.display().to_string();
        skopeo(&[
            "copy",
            "-q",
            "--src-creds",
            &env.creds_arg(),
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--digestfile",
            &digest_arg,
            &format!("docker://{}", env.busybox_image),
            &format!("docker://{reference}"),
        ]);
        let digest = std::fs::read_to_string(&digest_file).expect("skopeo wrote the digest");
        let digest = digest.trim().to_string();
        assert!(digest.starts_with("sha256:"), "{digest}");
        PublicImage { reference, digest }
    }
}

impl Drop for PublicImage {
    fn drop(&mut self) {
        let _ = Command::new("skopeo")
            .args(["delete", "--tls-verify=false"])
            .arg(format!("docker://{}", self.reference))
            .output();
    }
}

/// A Docker config folder holding valid credentials for the authenticated registry.
fn docker_config_with_login(env: &TestEnv) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    let auth = STANDARD.encode(env.creds_arg());
    let config = format!(r#"{{"auths":{{"{}":{{"auth":"{auth}"}}}}}}"#, env.registry);
    std::fs::write(dir.path().join("config.json"), config).expect("write config.json");
    dir
}

#[test]
fn an_image_on_the_public_registry_is_public_with_the_pushed_digest() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let image = PublicImage::push(env);
    let dir = tempfile::tempdir().expect("temp dir");
    let run = verify_public(dir.path(), &[&image.reference], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(
        run.stdout,
        format!("{}\tpublic\t{}\n", image.reference, image.digest)
    );
    assert!(
        run.stderr
            .contains("1 of 1 image can be pulled without credentials"),
        "{}",
        run.stderr
    );

    // pinned to the digest: exactly that manifest
    let pinned = format!("{}@{}", image.reference, image.digest);
    let run = verify_public(dir.path(), &[&pinned], &[]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, format!("{pinned}\tpublic\t{}\n", image.digest));
}

#[test]
fn the_authenticated_registry_is_private_even_with_valid_credentials_at_hand() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let config = docker_config_with_login(env);
    // the credentials are good: skopeo reads the same file and gets in
    let auth_file = config.path().join("config.json").display().to_string();
    skopeo(&[
        "inspect",
        "--raw",
        "--tls-verify=false",
        "--authfile",
        &auth_file,
        &format!("docker://{}", env.busybox_image),
    ]);
    let dir = tempfile::tempdir().expect("temp dir");
    let config_dir = config.path().display().to_string();
    let password = env.registry_password().expose().to_string();
    let run = verify_public(
        dir.path(),
        &[&env.busybox_image],
        &[
            ("DOCKER_CONFIG", &config_dir),
            ("BERTH_REGISTRY_USERNAME", &env.registry_user),
            ("BERTH_REGISTRY_PASSWORD", &password),
        ],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, format!("{}\tprivate\n", env.busybox_image));
    assert!(
        run.stderr.contains(&format!(
            "{}: a client without credentials cannot pull it: ",
            env.busybox_image
        )) && run.stderr.contains("anonymously")
            && run.stderr.contains("401"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "\n  fix: give the cluster pull credentials (a Kubernetes imagePullSecret), or make the repository \
             public in your registry's settings"
        ),
        "{}",
        run.stderr
    );
    assert!(
        !run.stderr.contains(&password) && !run.stdout.contains(&password),
        "the password leaked"
    );
}

#[test]
fn a_missing_tag_on_the_public_registry_is_not_found() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let reference = format!(
        "{}/public/busybox:{}",
        env.public_registry,
        unique("missing")
    );
    let dir = tempfile::tempdir().expect("temp dir");
    let run = verify_public(dir.path(), &[&reference], &[]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert_eq!(run.stdout, format!("{reference}\tnot-found\n"));
    assert!(
        run.stderr
            .contains("not found by a client without credentials")
            && run.stderr.contains("fix: ")
            && run.stderr.contains("check the name and tag"),
        "{}",
        run.stderr
    );
}

#[test]
fn an_unreachable_registry_cannot_tell_and_wins_the_exit_status() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let image = PublicImage::push(env);
    // nothing listens on port 1
    let nowhere = "127.0.0.1:1/team/app:1";
    let dir = tempfile::tempdir().expect("temp dir");
    let run = verify_public(dir.path(), &[&image.reference, nowhere], &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stdout
            .ends_with(&format!("{nowhere}\tunknown\tunavailable\n")),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr.contains(&format!(
            "{nowhere}: could not tell whether a client without credentials can pull it: "
        )) && run.stderr.contains("cannot connect"),
        "{}",
        run.stderr
    );
}

#[test]
fn json_has_one_object_per_image_in_order() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let image = PublicImage::push(env);
    let missing = format!("{}/public/busybox:{}", env.public_registry, unique("gone"));
    let dir = tempfile::tempdir().expect("temp dir");
    let run = verify_public(
        dir.path(),
        &["--json", &image.reference, &env.busybox_image, &missing],
        &[],
    );
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("JSON on stdout");
    let items = json.as_array().expect("an array");
    assert_eq!(items.len(), 3, "{json}");
    for item in items {
        let mut keys: Vec<&str> = item
            .as_object()
            .expect("objects")
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["detail", "digest", "error", "fix", "image", "status"],
            "{item}"
        );
    }
    assert_eq!(items[0]["image"], image.reference.as_str());
    assert_eq!(items[0]["status"], "public");
    assert_eq!(items[0]["digest"], image.digest.as_str());
    assert!(items[0]["fix"].is_null() && items[0]["detail"].is_null());

    assert_eq!(items[1]["image"], env.busybox_image.as_str());
    assert_eq!(items[1]["status"], "private");
    assert!(items[1]["digest"].is_null() && items[1]["error"].is_null());
    assert!(
        items[1]["detail"]
            .as_str()
            .is_some_and(|d| d.contains("401")),
        "{}",
        items[1]
    );
    assert!(
        items[1]["fix"]
            .as_str()
            .is_some_and(|f| f.contains("imagePullSecret")),
        "{}",
        items[1]
    );

    assert_eq!(items[2]["image"], missing.as_str());
    assert_eq!(items[2]["status"], "not-found");
}

#[test]
fn invalid_references_are_refused_before_any_request() {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = verify_public(dir.path(), &["127.0.0.1:5001/Upper/case:1"], &[]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.is_empty(), "{}", run.stdout);
    assert!(
        run.stderr.contains("repository names must be lowercase"),
        "{}",
        run.stderr
    );
    let run = verify_public(dir.path(), &["--help"], &[]);
    assert_eq!(run.code, 0);
    assert!(
        run.stdout.contains("Examples:")
            && run
                .stdout
                .contains("berth verify-public ghcr.io/my-org/my-task:1a2b3c")
            && run.stdout.contains("Exit status: 0 every image is public"),
        "{}",
        run.stdout
    );
}
