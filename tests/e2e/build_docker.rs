//! `berth build` end to end on the real Docker daemon and the authenticated test registry, as a user runs it:
//! log in, build a Python spec (PyPI packages, apt packages, env, commands, copied files) on the fixture image,
//! push, then check the pushed image with independent clients (skopeo, `docker pull` and `docker run`).
//! A second build must not build or push; a wrong password must be a clear authentication error.

use std::path::Path;
use std::process::Command;

use berth_tests::berth_with;
use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
    std::fs::write(path, text).expect("write");
}

fn tool(program: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn berth(dir: &Path, config: &Path, args: &[&str], stdin: &str) -> Run {
    let out = berth_with(
        dir,
        args,
        &[("DOCKER_CONFIG", config.to_str().expect("utf-8 path"))],
        stdin,
    );
    Run {
        code: out.status.code().expect("exit code"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[test]
fn build_pushes_a_python_image_that_independent_clients_can_run() {
    let env = TestEnv::get();
    let project = tempfile::tempdir().expect("temp dir");
    let dir = project.path();
    let config = dir.join("docker-config");
    let repo = unique("e2e");
    write(dir, "data/hello.txt", "hello from berth\n");
    write(
        dir,
        "spec.yaml",
        &format!(
            r#"name: {repo}
registry: {registry}/berth-e2e
base_image: {python}
python_exec: /usr/bin/python3
packages: ["six==1.16.0"]
apt_packages: [jq]
env: {{GREETING: "hello from env"}}
commands: ["jq --version > /root/jq-version.txt"]
copy: [data]
builder_config: {{uv_image: "{uv}"}}
builder_options: {{install_flytekit: false}}
"#,
            registry = env.registry,
            python = env.python_image,
            uv = env.uv_image,
        ),
    );

    log_in(dir, &config, env);

    let first = berth(
        dir,
        &config,
        &["build", "--engine", "docker", "spec.yaml"],
        "",
    );
    assert_eq!(first.code, 0, "build failed:\n{}", first.stderr);
    let pushed = first.stdout.trim().to_string();
    let (reference, digest) = pushed.split_once('@').expect("name@digest on stdout");
    assert!(
        reference.starts_with(&format!("{}/berth-e2e/{repo}:", env.registry)),
        "{pushed}"
    );
    assert!(
        first.stderr.contains("engine: docker (from --engine)"),
        "the engine choice is announced:\n{}",
        first.stderr
    );

    // The registry holds exactly that digest (skopeo, not berth, asks).
    assert_eq!(
        registry_digest(env, reference),
        digest,
        "the registry holds what berth printed"
    );

    // Pull it back with docker after removing the local copy, and run it.
    let _ = tool("docker", &["rmi", "-f", reference]);
    let (ok, out) = tool(
        "docker",
        &[
            "--config",
            config.to_str().expect("utf-8"),
            "pull",
            reference,
        ],
    );
    assert!(ok, "docker pull: {out}");
    let script = "import os, six; print(six.__version__); print(os.environ['GREETING']); \
                  print(open('/root/data/hello.txt').read().strip()); print(open('/root/jq-version.txt').read().strip())";
    let (ok, out) = tool(
        "docker",
        &["run", "--rm", reference, "python", "-c", script],
    );
    assert!(ok, "docker run: {out}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[..3],
        ["1.16.0", "hello from env", "hello from berth"],
        "{out}"
    );
    assert!(lines[3].starts_with("jq-"), "{out}");

    // A second build finds the image and does no engine work: nothing is built locally, nothing pushed.
    let _ = tool("docker", &["rmi", "-f", reference]);
    let second = berth(
        dir,
        &config,
        &["build", "--engine", "docker", "spec.yaml"],
        "",
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert_eq!(second.stdout.trim(), pushed);
    assert!(
        second.stderr.contains("already in the registry"),
        "{}",
        second.stderr
    );
    assert!(
        !second.stderr.contains("engine:"),
        "no engine is even contacted:\n{}",
        second.stderr
    );
    let (exists_locally, _) = tool("docker", &["image", "inspect", reference]);
    assert!(
        !exists_locally,
        "the second build must not build {reference}"
    );

    // `berth exists` agrees.
    let exists = berth(dir, &config, &["exists", "spec.yaml"], "");
    assert_eq!(exists.code, 0, "{}", exists.stderr);
    assert!(
        exists.stdout.contains(&format!("present\t{digest}")),
        "{}",
        exists.stdout
    );
}

#[test]
fn a_wrong_password_is_a_clear_authentication_error() {
    let env = TestEnv::get();
    let project = tempfile::tempdir().expect("temp dir");
    let dir = project.path();
    let config = dir.join("docker-config");
    let login = berth(
        dir,
        &config,
        &[
            "login",
            &env.registry,
            "-u",
            &env.registry_user,
            "--password-stdin",
        ],
        "not-the-password",
    );
    assert_eq!(
        login.code, 4,
        "login with a wrong password: {}",
        login.stderr
    );
    assert!(login.stderr.contains("unauthorized"), "{}", login.stderr);
    assert!(
        !config.join("config.json").exists(),
        "nothing is stored when the check fails"
    );

    // Credentials that the registry refuses, stored by hand as a user's stale config would have them.
    let auth = base64_encode(&format!("{}:not-the-password", env.registry_user));
    write(
        &config,
        "config.json",
        &format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            env.registry
        ),
    );
    write(
        dir,
        "spec.yaml",
        &format!(
            "name: {}\nregistry: {}/berth-e2e\n",
            unique("denied"),
            env.registry
        ),
    );
    for args in [
        &["exists", "spec.yaml"][..],
        &["build", "--engine", "docker", "spec.yaml"][..],
    ] {
        let run = berth(dir, &config, args, "");
        assert_ne!(run.code, 0, "{args:?} must fail");
        assert!(
            run.stderr.contains("unauthorized"),
            "{args:?}: {}",
            run.stderr
        );
        assert!(
            run.stderr.contains("berth login") || run.stderr.contains("docker login"),
            "{args:?} says how to fix it: {}",
            run.stderr
        );
        assert!(
            !run.stderr.contains("not-the-password"),
            "the password never reaches a message"
        );
    }
    let build = berth(
        dir,
        &config,
        &["build", "--engine", "docker", "spec.yaml"],
        "",
    );
    assert_eq!(
        build.code, 4,
        "build exits with the unauthorized status: {}",
        build.stderr
    );
}

/// Logs in to the test registry with berth, storing the credentials in `config`.
fn log_in(dir: &Path, config: &Path, env: &TestEnv) {
    let args = [
        "login",
        &env.registry,
        "-u",
        &env.registry_user,
        "--password-stdin",
    ];
    let login = berth(dir, config, &args, env.registry_password().expose());
    assert_eq!(login.code, 0, "login failed: {}", login.stderr);
}

/// The digest the registry reports for `reference`, asked by skopeo rather than berth.
fn registry_digest(env: &TestEnv, reference: &str) -> String {
    let image = format!("docker://{reference}");
    let args = [
        "inspect",
        "--tls-verify=false",
        "--creds",
        &env.creds_arg(),
        "--format",
        "{{.Digest}}",
        &image,
    ];
    let (ok, inspected) = tool("skopeo", &args);
    assert!(ok, "skopeo inspect {reference}: {inspected}");
    inspected.trim().to_string()
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn a_base_spec_is_built_first_and_no_push_then_push_works() {
    let env = TestEnv::get();
    let project = tempfile::tempdir().expect("temp dir");
    let dir = project.path();
    let config = dir.join("docker-config");
    let common = format!(
        "registry: {}/berth-e2e\nbuilder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
        env.registry, env.uv_image
    );
    write(
        dir,
        "base.yaml",
        &format!("name: {}\nbase_image: {}\npython_exec: /usr/bin/python3\npackages: [\"six==1.16.0\"]\n{common}", unique("base"), env.python_image),
    );
    write(
        dir,
        "app.yaml",
        &format!("name: {}\nbase_image: {{spec: base.yaml}}\npython_exec: /usr/bin/python3\nenv: {{LAYER: app}}\n{common}", unique("app")),
    );
    log_in(dir, &config, env);

    // Build both without pushing: the base is built first, the app on top of the local base.
    let built = berth(
        dir,
        &config,
        &["build", "--engine", "docker", "--no-push", "app.yaml"],
        "",
    );
    assert_eq!(built.code, 0, "{}", built.stderr);
    let names: Vec<&str> = built.stdout.lines().collect();
    let base_name = berth(dir, &config, &["name", "base.yaml"], "")
        .stdout
        .trim()
        .to_string();
    let app_name = berth(dir, &config, &["name", "app.yaml"], "")
        .stdout
        .trim()
        .to_string();
    assert_eq!(
        names,
        [base_name.as_str(), app_name.as_str()],
        "base first, then the app; nothing pushed"
    );
    let (ok, history) = tool(
        "docker",
        &["image", "inspect", "--format", "{{.Config.Env}}", &app_name],
    );
    assert!(ok && history.contains("LAYER=app"), "{history}");
    let exists = berth(dir, &config, &["exists", "base.yaml", "app.yaml"], "");
    assert_eq!(exists.code, 1, "nothing was pushed yet: {}", exists.stdout);

    // Push them, and the registry has both with the digests berth printed.
    let pushed = berth(
        dir,
        &config,
        &["push", "--engine", "docker", "base.yaml", "app.yaml"],
        "",
    );
    assert_eq!(pushed.code, 0, "{}", pushed.stderr);
    for line in pushed.stdout.lines() {
        let (reference, digest) = line.split_once('@').expect("name@digest");
        assert_eq!(
            registry_digest(env, reference),
            digest,
            "the registry holds what berth printed"
        );
    }
    let exists = berth(dir, &config, &["exists", "base.yaml", "app.yaml"], "");
    assert_eq!(exists.code, 0, "{}", exists.stdout);
    for name in [&base_name, &app_name] {
        let _ = tool("docker", &["rmi", "-f", name]);
    }
}
