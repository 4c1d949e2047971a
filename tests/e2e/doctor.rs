//! `berth doctor` on the machine `scripts/env/up.sh` sets up: as root (Docker and rootful Podman, the rootless
//! section skipped, registry credentials present, refused or missing), as the rootless Podman user (everything
//! rootless Podman needs is there), and as `berth-plain`, a user with neither subordinate ids nor a service.

use std::path::Path;
use std::process::Command;

use berth_tests::env::TestEnv;
use berth_tests::users::SystemUser;
use berth_tests::{berth_bin, output_with_stdin};
use serde_json::Value;

/// The user `scripts/env/up.sh` creates with a runtime folder but no subordinate ids and no Podman service.
const PLAIN_USER: &str = "berth-plain";

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    fn of(command: Command, stdin: &str) -> Run {
        let out = output_with_stdin(command, stdin);
        Run {
            code: out.status.code().expect("exit code"),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "doctor --json printed no JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// berth as root, reaching the test environment's engines, with credentials only from `docker_config` (the
/// process's own registry variables and Podman auth files are kept out).
fn berth_as_root(env: &TestEnv, docker_config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(berth_bin());
    command
        .args(args)
        .env(
            "DOCKER_HOST",
            format!("unix://{}", env.docker_socket.display()),
        )
        .env(
            "CONTAINER_HOST",
            format!("unix://{}", env.podman_socket.display()),
        )
        .env("DOCKER_CONFIG", docker_config)
        .env(
            "REGISTRY_AUTH_FILE",
            docker_config.join("no-podman-auth.json"),
        )
        .env_remove("BERTH_ENGINE")
        .env_remove("BERTH_REGISTRY_USERNAME")
        .env_remove("BERTH_REGISTRY_PASSWORD")
        .env_remove("BERTH_REGISTRY_HOST")
        .current_dir(docker_config);
    command
}

fn engine<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["engines"]
        .as_array()
        .and_then(|engines| engines.iter().find(|e| e["engine"] == name))
        .unwrap_or_else(|| panic!("no {name} in {report:#}"))
}

fn check<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["rootless"]["checks"]
        .as_array()
        .and_then(|checks| checks.iter().find(|c| c["check"] == name))
        .unwrap_or_else(|| panic!("no rootless check {name} in {report:#}"))
}

fn problem_fixes(report: &Value) -> Vec<String> {
    report["problems"]
        .as_array()
        .expect("problems array")
        .iter()
        .map(|p| p["fix"].as_str().unwrap_or_default().to_string())
        .collect()
}

#[test]
fn as_root_both_engines_answer_and_the_rootless_section_says_why_it_was_skipped() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let config = tempfile::tempdir().expect("temp dir");
    let run = Run::of(berth_as_root(env, config.path(), &["doctor", "--json"]), "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    for name in ["docker", "podman", "containerd"] {
        let found = engine(&report, name);
        assert_eq!(
            (found["reachable"].as_bool(), found["rootless"].as_bool()),
            (Some(true), Some(false)),
            "{found:#}"
        );
        assert!(
            !found["version"].as_str().unwrap_or_default().is_empty(),
            "{found:#}"
        );
    }
    assert_eq!(report["rootless"]["skipped"], "running as root");
    assert_eq!(report["problems"], Value::Array(vec![]));
    // LXD's own section: the test environment's server is initialised (a dir pool, a root disk in `default`)
    assert_eq!(engine(&report, "lxd")["reachable"], true, "{report:#}");
    let lxd = &report["lxd"];
    assert_eq!(lxd["pools"], serde_json::json!(["default"]), "{report:#}");
    assert_eq!(lxd["root_pool"], "default", "{report:#}");
    assert!(
        lxd["findings"]
            .as_array()
            .is_some_and(|f| f.len() == 2 && f.iter().all(|f| f["status"] == "ok")),
        "{report:#}"
    );

    let human = Run::of(berth_as_root(env, config.path(), &["doctor"]), "");
    assert_eq!(human.code, 0, "{}", human.stdout);
    assert!(
        human.stdout.contains("  ok       engine docker: reachable"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .contains("  skipped  rootless: berth runs as root"),
        "{}",
        human.stdout
    );
    assert!(
        human
            .stdout
            .ends_with("no problems found: berth can build here\n"),
        "{}",
        human.stdout
    );
}

#[test]
fn as_root_registry_credentials_are_checked_and_missing_or_wrong_ones_name_berth_login() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let password = env.registry_password().expose();
    let registry = env.registry.as_str();
    let doctor = ["doctor", "--registry", registry];

    let missing = tempfile::tempdir().expect("temp dir");
    let run = Run::of(berth_as_root(env, missing.path(), &doctor), "");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains(&format!(
            "problem  registry credentials: no credentials for {registry}"
        )),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(&format!("fix: berth login {registry}")),
        "{}",
        run.stdout
    );

    let logged_in = tempfile::tempdir().expect("temp dir");
    let login = [
        "login",
        registry,
        "-u",
        &env.registry_user,
        "--password-stdin",
    ];
    let run = Run::of(berth_as_root(env, logged_in.path(), &login), password);
    assert_eq!(run.code, 0, "berth login: {}", run.stderr);
    let mut with_json = doctor.to_vec();
    with_json.push("--json");
    let run = Run::of(berth_as_root(env, logged_in.path(), &with_json), "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["registry"]["login"], "ok", "{report:#}");
    assert_eq!(
        report["registry"]["credentials"]["username"],
        env.registry_user.as_str()
    );
    let source = report["registry"]["credentials"]["source"]
        .as_str()
        .unwrap_or_default();
    assert!(
        source.contains(&logged_in.path().join("config.json").display().to_string()),
        "{source}"
    );
    let human = Run::of(berth_as_root(env, logged_in.path(), &doctor), "");
    assert_eq!(human.code, 0, "{}", human.stdout);
    for output in [&run.stdout, &run.stderr, &human.stdout, &human.stderr] {
        assert!(
            !output.contains(password),
            "the password was printed:\n{output}"
        );
    }

    // The same user with a wrong password: the registry refuses, and the fix is to log in again.
    let wrong = tempfile::tempdir().expect("temp dir");
    let auth = base64_encode(&format!("{}:not-{password}", env.registry_user));
    let config = format!(r#"{{"auths": {{"{registry}": {{"auth": "{auth}"}}}}}}"#);
    std::fs::write(wrong.path().join("config.json"), config).expect("write config");
    let run = Run::of(berth_as_root(env, wrong.path(), &with_json), "");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["registry"]["login"], "refused", "{report:#}");
    let fixes = problem_fixes(&report);
    assert!(
        fixes
            .iter()
            .any(|f| f.starts_with(&format!("berth login {registry}"))),
        "{fixes:?}"
    );
    assert!(
        !run.stdout.contains(password) && !run.stdout.contains(&auth),
        "{}",
        run.stdout
    );
}

#[test]
fn as_the_rootless_user_everything_rootless_podman_needs_is_there() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let user = SystemUser::get(&env.podman_rootless_user);
    let run = Run::of(
        user.berth(&["BERTH_ENGINE=podman"], &["doctor", "--json"]),
        "",
    );
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["rootless"]["user"], user.name.as_str());
    for ranges in ["subuid", "subgid"] {
        let count: u64 = report["rootless"][ranges]
            .as_array()
            .unwrap_or_else(|| panic!("no {ranges} ranges in {report:#}"))
            .iter()
            .filter_map(|r| r["count"].as_u64())
            .sum();
        assert!(count >= 65536, "{ranges}: {report:#}");
        assert_eq!(check(&report, ranges)["status"], "ok");
    }
    for name in [
        "newuidmap",
        "newgidmap",
        "podman",
        "XDG_RUNTIME_DIR",
        "podman service",
    ] {
        assert_eq!(check(&report, name)["status"], "ok", "{name}: {report:#}");
    }
    // up.sh leaves buildah's cache folder as root's first Podman build does: builds work (on empty caches), and
    // doctor names the condition with both fixes.
    let caches = check(&report, "build caches");
    assert_eq!(caches["status"], "warning", "{caches:#}");
    let fix = caches["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains("chmod 1777 /var/tmp/buildah-cache") && fix.contains("TMPDIR"),
        "{fix}"
    );
    let podman = engine(&report, "podman");
    assert_eq!(
        (podman["reachable"].as_bool(), podman["rootless"].as_bool()),
        (Some(true), Some(true)),
        "{podman:#}"
    );
    assert_eq!(report["engine_choice"]["engine"], "podman");

    // Left to detection, berth passes over Docker's socket, which this user may not open, for the user's own
    // Podman service; doctor still says why Docker is out of reach, and names both ways out.
    let run = Run::of(user.berth(&[], &["doctor", "--json"]), "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(report["engine_choice"]["engine"], "podman", "{report:#}");
    let docker = engine(&report, "docker");
    assert_eq!(docker["status"], "warning", "{docker:#}");
    assert!(
        docker["message"]
            .as_str()
            .unwrap_or_default()
            .contains("permission denied on"),
        "{docker:#}"
    );
    let fix = docker["fix"].as_str().unwrap_or_default();
    assert!(
        fix.contains(&format!("sudo usermod -aG docker {}", user.name)),
        "{fix}"
    );
    assert!(fix.contains("rootless Podman"), "{fix}");
}

#[test]
fn a_user_without_subordinate_ids_or_service_gets_both_fixes() {
    let user = SystemUser::get(PLAIN_USER);
    let run = Run::of(
        user.berth(&["BERTH_ENGINE=podman"], &["doctor", "--json"]),
        "",
    );
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    assert_eq!(
        report["rootless"]["subuid"],
        Value::Array(vec![]),
        "{report:#}"
    );
    let fixes = problem_fixes(&report);
    assert!(
        fixes
            .iter()
            .any(|f| f.starts_with("sudo usermod --add-subuids ")
                && f.contains("--add-subgids")
                && f.contains(PLAIN_USER)),
        "{fixes:#?}"
    );
    assert!(
        fixes
            .iter()
            .any(|f| f.contains("systemctl --user start podman.socket")),
        "{fixes:#?}"
    );
    let service = check(&report, "podman service");
    let socket = user.runtime_dir().join("podman/podman.sock");
    assert_eq!(
        service["message"]
            .as_str()
            .map(|m| m.starts_with(&format!("no socket at {}", socket.display()))),
        Some(true),
        "{service:#}"
    );

    let human = Run::of(user.berth(&[], &["doctor"]), "");
    assert_eq!(human.code, 1, "{}", human.stdout);
    assert!(
        human.stdout.contains(&format!(
            "problem  subuid: /etc/subuid has no range for {PLAIN_USER}"
        )),
        "{}",
        human.stdout
    );
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn detection_passes_over_sockets_the_user_cannot_open() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    // The rootless user may not open Docker's socket (listed first) but has a Podman service of its own.
    let user = SystemUser::get(&env.podman_rootless_user);
    let run = Run::of(user.berth(&[], &["config", "--json"]), "");
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let config = run.json();
    let socket = user.runtime_dir().join("podman/podman.sock");
    assert_eq!(config["engine"]["value"], "podman", "{config:#}");
    assert!(
        config["engine"]["source"]
            .to_string()
            .contains(&socket.display().to_string()),
        "{config:#}"
    );

    // A user who can open none of them is told, per socket, why, and what would let it in.
    let user = SystemUser::get(PLAIN_USER);
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .expect("chmod");
    let spec = dir.path().join("spec.yaml");
    std::fs::write(&spec, "name: unreachable\npackages: [six]\n").expect("spec");
    let spec = spec.display().to_string();
    let run = Run::of(
        user.berth(&[], &["build", "--no-push", "--force", &spec]),
        "",
    );
    assert_eq!(run.code, 3, "{}\n{}", run.stdout, run.stderr);
    for expected in [
        "no container engine this user can reach",
        "docker: /var/run/docker.sock (permission denied)",
        "(no such socket)",
        "join group `docker` to use /var/run/docker.sock",
        "/run/containerd/containerd.sock",
        "only for root",
    ] {
        assert!(
            run.stderr.contains(expected),
            "{expected:?} missing from:\n{}",
            run.stderr
        );
    }
}

#[test]
fn the_project_files_connection_settings_are_the_ones_doctor_reports_and_uses() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("no-containerd.sock");
    std::fs::write(
        dir.path().join("berth.yaml"),
        format!(
            "engine:\n  name: containerd\n  containerd: {{address: {}}}\n",
            missing.display()
        ),
    )
    .expect("berth.yaml");
    let mut command = berth_as_root(env, dir.path(), &["doctor", "--json"]);
    command.env_remove("CONTAINERD_ADDRESS");
    let run = Run::of(command, "");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let containerd = engine(&report, "containerd");
    assert_eq!(
        containerd["endpoint"],
        format!("unix://{}", missing.display()),
        "{containerd:#}"
    );
    assert_eq!(containerd["status"], "problem", "{containerd:#}");
    assert_eq!(
        report["engine_choice"]["engine"], "containerd",
        "{report:#}"
    );
}

/// A `DOCKER_HOST` that does not answer is the problem doctor names (berth would not build elsewhere), and each
/// engine says which variable points at it.
#[test]
fn a_dead_docker_host_is_named_as_the_problem() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let config = tempfile::tempdir().expect("temp dir");
    let dead = format!("unix://{}/dead.sock", config.path().display());
    let mut command = berth_as_root(env, config.path(), &["doctor", "--json"]);
    command.env("DOCKER_HOST", &dead);
    let run = Run::of(command, "");
    assert_eq!(run.code, 1, "{}\n{}", run.stdout, run.stderr);
    let report = run.json();
    let docker = engine(&report, "docker");
    assert!(
        docker["message"]
            .as_str()
            .unwrap_or_default()
            .ends_with("; DOCKER_HOST points there"),
        "{docker:#}"
    );
    let podman = engine(&report, "podman");
    assert!(
        podman["message"]
            .as_str()
            .unwrap_or_default()
            .contains("CONTAINER_HOST points there"),
        "{podman:#}"
    );
    assert!(report["engine_choice"].is_null(), "{report:#}");
    let problems = report["problems"].as_array().expect("problems");
    assert!(
        problems.iter().any(|p| p["message"]
            .as_str()
            .unwrap_or_default()
            .starts_with(&format!("{}={dead} names the docker engine", "DOCKER_HOST"))
            && p["fix"]
                .as_str()
                .unwrap_or_default()
                .contains("unset DOCKER_HOST")),
        "{report:#}"
    );
}

/// Without credentials, a registry that asks for none (the public test registry takes anonymous pushes) is not
/// a problem; the authenticated one still is.
#[test]
fn no_credentials_is_a_problem_only_where_the_registry_asks_for_them() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let config = tempfile::tempdir().expect("temp dir");
    let doctor = |registry: &str| {
        let args = ["doctor", "--json", "--registry", registry];
        Run::of(berth_as_root(env, config.path(), &args), "")
    };
    let open = doctor(&env.public_registry);
    assert_eq!(open.code, 0, "{}\n{}", open.stdout, open.stderr);
    let report = open.json();
    assert_eq!(report["registry"]["needs_credentials"], false, "{report:#}");
    assert_eq!(report["problems"], Value::Array(vec![]), "{report:#}");

    let closed = doctor(&env.registry);
    assert_eq!(closed.code, 1, "{}", closed.stdout);
    assert_eq!(closed.json()["registry"]["needs_credentials"], true);
}
