//! `berth build` end to end on every engine, as a user runs it: log in, build a Python spec (PyPI packages, apt
//! packages, env, commands, copied files) on the fixture image, push, then check the pushed image with independent
//! clients: skopeo asks the registry, and Docker and Podman each pull it and run it, so an image built by one engine
//! runs on the other. A second build must not build or push; a wrong password must be a clear authentication
//! error; a spec based on another spec builds its base first.
//!
//! Each engine is reached the way its users reach it: `--engine docker` and `--engine podman` as root, and for
//! rootless Podman berth runs as the unprivileged user of `scripts/env/up.sh`, finding that user's service through
//! `$XDG_RUNTIME_DIR` as Podman's own tools do.

use std::path::Path;

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::project::{rootless_user, tool, write, Engine, Project, Run};

#[test]
fn docker_builds_a_python_image_that_docker_and_podman_run() {
    python_image_round_trip(Engine::Docker);
}

#[test]
fn podman_builds_a_python_image_that_docker_and_podman_run() {
    python_image_round_trip(Engine::Podman);
}

#[test]
fn rootless_podman_builds_a_python_image_that_docker_and_podman_run() {
    python_image_round_trip(Engine::PodmanRootless);
}

#[test]
fn containerd_builds_a_python_image_that_docker_and_podman_run() {
    python_image_round_trip(Engine::Containerd);
}

#[test]
fn lxd_builds_a_python_image_that_docker_and_podman_run() {
    python_image_round_trip(Engine::Lxd);
}

/// Builds and pushes a Python spec with `engine`, checks the registry's digest, runs the image on Docker and on
/// rootful Podman (each pulling it from the registry), then checks that a second build is a no-op.
fn python_image_round_trip(engine: Engine) {
    let Some(env) = engine.selected() else {
        return;
    };
    let project = Project::new(engine);
    let repo = unique(&format!("e2e-{}", engine.flag()));
    project.write("data/hello.txt", "hello from berth\n");
    project.write(
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

    log_in(&project, env);

    let first = project.build(&["spec.yaml"]);
    assert_eq!(first.code, 0, "build failed:\n{}", first.stderr);
    if engine == Engine::PodmanRootless {
        // scripts/env/up.sh leaves buildah's cache folder as root's first Podman build does (root's, mode 755):
        // the rootless build still works, on empty caches, and says how to get caching back.
        assert!(
            first.stderr.contains("cannot keep build caches")
                && first.stderr.contains("chmod 1777 /var/tmp/buildah-cache"),
            "the rootless build warns about its caches:\n{}",
            first.stderr
        );
    }
    let pushed = first.stdout.trim().to_string();
    let (reference, digest) = pushed.split_once('@').expect("name@digest on stdout");
    assert!(
        reference.starts_with(&format!("{}/berth-e2e/{repo}:", env.registry)),
        "{pushed}"
    );
    assert!(
        first
            .stderr
            .contains(&format!("engine: {} (from --engine)", engine.flag())),
        "the engine choice is announced:\n{}",
        first.stderr
    );

    steps_count_the_plan(&project, &first.stderr);

    // The registry holds exactly that digest (skopeo, not berth, asks).
    assert_eq!(
        registry_digest(env, reference),
        digest,
        "the registry holds what berth printed"
    );

    // Docker and Podman each pull it (no local copy first) and run it.
    let script = "import os, six; print(six.__version__); print(os.environ['GREETING']); \
                  print(open('/root/data/hello.txt').read().strip()); print(open('/root/jq-version.txt').read().strip())";
    for runner in ["docker", "podman"] {
        let _ = tool(runner, &["rmi", "-f", reference]);
        let (ok, out) = match runner {
            "docker" => tool(
                "docker",
                &[
                    "--config",
                    &project.config().display().to_string(),
                    "pull",
                    reference,
                ],
            ),
            _ => tool(
                "podman",
                &[
                    "pull",
                    "--tls-verify=false",
                    "--creds",
                    &env.creds_arg(),
                    reference,
                ],
            ),
        };
        assert!(ok, "{runner} pull of the {engine:?}-built image: {out}");
        let (ok, out) = tool(runner, &["run", "--rm", reference, "python", "-c", script]);
        assert!(ok, "{runner} run of the {engine:?}-built image: {out}");
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines.get(..3),
            Some(&["1.16.0", "hello from env", "hello from berth"][..]),
            "{runner} running the {engine:?}-built image: {out}"
        );
        assert!(lines[3].starts_with("jq-"), "{out}");
        let _ = tool(runner, &["rmi", "-f", reference]);
    }

    // A second build finds the image and does no engine work: nothing is built locally, nothing pushed.
    let second = project.build(&["spec.yaml"]);
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

    // `berth exists` agrees.
    let exists = project.berth(&["exists", "spec.yaml"], "");
    assert_eq!(exists.code, 0, "{}", exists.stderr);
    assert!(
        exists.stdout.contains(&format!("present\t{digest}")),
        "{}",
        exists.stdout
    );
}

#[test]
fn a_wrong_password_is_a_clear_authentication_error() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let project = Project::new(Engine::Docker);
    let config = project.config();
    let login = project.berth(
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
    project.write(
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
        let run = project.berth(args, "");
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
    let build = project.build(&["spec.yaml"]);
    assert_eq!(
        build.code, 4,
        "build exits with the unauthorized status: {}",
        build.stderr
    );
}

/// Every engine numbers a spec's steps the same way: the Dockerfile's main stage after `FROM` (helper stages and
/// `FROM` are not counted), in order, up to the total.
fn steps_count_the_plan(project: &Project, stderr: &str) {
    let rendered = project.berth(&["render", "spec.yaml"], "");
    let main_stage = rendered.stdout.rsplit("\nFROM ").next().unwrap_or_default();
    let total = main_stage
        .lines()
        .skip(1)
        .filter(|l| l.starts_with(|c: char| c.is_ascii_uppercase()))
        .count();
    let steps: Vec<(usize, usize)> = stderr
        .lines()
        .filter_map(|l| l.split_once("] step ")?.1.split_once(':'))
        .filter_map(|(counts, _)| {
            let (i, n) = counts.split_once('/')?;
            Some((i.parse().ok()?, n.parse().ok()?))
        })
        .collect();
    let expected: Vec<(usize, usize)> = (1..=total).map(|i| (i, total)).collect();
    assert_eq!(
        steps, expected,
        "{:?}: steps of the main stage, 1 to {total}:\n{stderr}",
        project.engine
    );
}

/// The first command quoted in the hint of a failed run.
fn hinted_command(run: &Run) -> String {
    let hint = run
        .stderr
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("no hint:\n{}", run.stderr));
    hint.split('`')
        .nth(1)
        .expect("a quoted command")
        .to_string()
}

/// For each place credentials come from (none, the environment, a Docker config's `auths`, a credential helper),
/// a refused check says what fixes it there, the same for `exists` and `build`, and the command it names works.
#[test]
fn refused_credentials_get_the_fix_for_where_they_came_from() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let project = Project::new(Engine::Docker);
    let config = project.config();
    let spec = format!(
        "name: {}\nregistry: {}/team\n",
        unique("hint"),
        env.registry
    );
    project.write("spec.yaml", &spec);
    let password = env.registry_password().expose().to_string();
    let checks = |vars: &[(&str, &str)]| -> Vec<Run> {
        [
            &["exists", "spec.yaml"][..],
            &["build", "--engine", "docker", "spec.yaml"][..],
        ]
        .iter()
        .map(|args| project.berth_with(args, "", vars))
        .collect()
    };
    let same_hint = |runs: &[Run]| -> String {
        assert_eq!(runs[0].code, 2, "exists could not tell: {}", runs[0].stderr);
        assert_eq!(runs[1].code, 4, "build was refused: {}", runs[1].stderr);
        let command = hinted_command(&runs[0]);
        assert_eq!(hinted_command(&runs[1]), command, "exists and build agree");
        command
    };
    let login_as_hinted = |command: &str, vars: &[(&str, &str)]| {
        let command = command.replace("USER", &env.registry_user);
        let words: Vec<&str> = command.split_whitespace().collect();
        assert_eq!(words[..2], ["berth", "login"], "{command}");
        let end = words.iter().position(|w| *w == "<").unwrap_or(words.len());
        let login = project.berth_with(&words[1..end], &password, vars);
        assert_eq!(login.code, 0, "`{command}` as hinted: {}", login.stderr);
    };

    // No credentials anywhere: the hinted login (the registry host, not the repository path) fixes it.
    let command = same_hint(&checks(&[]));
    assert!(
        command.starts_with(&format!("berth login {} ", env.registry)),
        "{command}"
    );
    login_as_hinted(&command, &[]);
    assert_eq!(checks(&[])[0].code, 1, "logged in: the image is absent");

    // Wrong credentials in the environment win over that login: the hint says so instead of "log in".
    let wrong = [
        ("BERTH_REGISTRY_USERNAME", env.registry_user.as_str()),
        ("BERTH_REGISTRY_PASSWORD", "not-the-password"),
    ];
    let runs = checks(&wrong);
    same_hint(&runs);
    assert!(
        runs[1].stderr.contains("unset them") && !runs[1].stderr.contains("hint: log in"),
        "{}",
        runs[1].stderr
    );

    // A stale `auths` entry: the hint names the file and the login that replaces it.
    let auth = base64_encode(&format!("{}:not-the-password", env.registry_user));
    let auths = format!(
        r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
        env.registry
    );
    write(&config, "config.json", &auths);
    let runs = checks(&[]);
    let command = same_hint(&runs);
    assert!(
        runs[1]
            .stderr
            .contains(&config.join("config.json").display().to_string()),
        "{}",
        runs[1].stderr
    );
    login_as_hinted(&format!("{command} --username USER --password-stdin"), &[]);
    assert_eq!(
        checks(&[])[0].code,
        1,
        "logged in again: the image is absent"
    );

    // A credential helper holding a wrong password: the hint names it, and a login stores through it.
    let bin = project.path().join("bin");
    write(
        &bin,
        "docker-credential-berthtest",
        "#!/bin/sh\nstore=\"$(dirname \"$0\")/stored.json\"\ncase \"$1\" in\n\
         get) if [ -f \"$store\" ]; then cat \"$store\"; else echo '{\"Username\":\"berth\",\"Secret\":\"not-the-password\"}'; fi ;;\n\
         store) cat > \"$store\" ;;\nesac\n",
    );
    tool(
        "chmod",
        &[
            "+x",
            &bin.join("docker-credential-berthtest")
                .display()
                .to_string(),
        ],
    );
    write(
        &config,
        "config.json",
        &format!(r#"{{"credHelpers": {{"{}": "berthtest"}}}}"#, env.registry),
    );
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let with_helper = [("PATH", path.as_str())];
    let runs = checks(&with_helper);
    let command = same_hint(&runs);
    assert!(
        runs[1].stderr.contains("docker-credential-berthtest"),
        "{}",
        runs[1].stderr
    );
    login_as_hinted(
        &format!("{command} --username USER --password-stdin"),
        &with_helper,
    );
    assert!(
        bin.join("stored.json").exists(),
        "stored through the helper"
    );
    assert_eq!(
        checks(&with_helper)[0].code,
        1,
        "logged in again: the image is absent"
    );
}

/// Logs in to the test registry with berth, storing the credentials in `config`.
fn log_in(project: &Project, env: &TestEnv) {
    let args = [
        "login",
        &env.registry,
        "-u",
        &env.registry_user,
        "--password-stdin",
    ];
    let login = project.berth(&args, env.registry_password().expose());
    assert_eq!(login.code, 0, "login failed: {}", login.stderr);
}

/// The digest the registry reports for `reference`, asked by skopeo rather than berth.
fn registry_digest(env: &TestEnv, reference: &str) -> String {
    berth_tests::project::skopeo_digest(reference, &env.creds_arg(), false)
}

fn base64_encode(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

#[test]
fn docker_builds_a_base_spec_first_and_pushes_later() {
    base_first_then_push(Engine::Docker);
}

#[test]
fn rootless_podman_builds_a_base_spec_first_and_pushes_later() {
    base_first_then_push(Engine::PodmanRootless);
}

/// `--no-push` on a spec whose base is another spec builds the base first and the app on the local base; `berth
/// push` then pushes both with the digests the registry reports.
fn base_first_then_push(engine: Engine) {
    let Some(env) = engine.selected() else {
        return;
    };
    let project = Project::new(engine);
    let common = format!(
        "registry: {}/berth-e2e\nbuilder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
        env.registry, env.uv_image
    );
    project.write(
        "base.yaml",
        &format!("name: {}\nbase_image: {}\npython_exec: /usr/bin/python3\npackages: [\"six==1.16.0\"]\n{common}", unique("base"), env.python_image),
    );
    project.write(
        "app.yaml",
        &format!("name: {}\nbase_image: {{spec: base.yaml}}\npython_exec: /usr/bin/python3\nenv: {{LAYER: app}}\n{common}", unique("app")),
    );
    log_in(&project, env);

    // Build both without pushing: the base is built first, the app on top of the local base.
    let built = project.build(&["--no-push", "app.yaml"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let names: Vec<&str> = built.stdout.lines().collect();
    let base_name = project
        .berth(&["name", "base.yaml"], "")
        .stdout
        .trim()
        .to_string();
    let app_name = project
        .berth(&["name", "app.yaml"], "")
        .stdout
        .trim()
        .to_string();
    assert_eq!(
        names,
        [base_name.as_str(), app_name.as_str()],
        "base first, then the app; nothing pushed"
    );
    assert_eq!(
        local_env(&project, &app_name)
            .as_deref()
            .map(|e| e.contains("LAYER=app")),
        Some(true),
        "the app image is in the engine's local store, with its env"
    );
    let exists = project.berth(&["exists", "base.yaml", "app.yaml"], "");
    assert_eq!(exists.code, 1, "nothing was pushed yet: {}", exists.stdout);

    // Push them, and the registry has both with the digests berth printed.
    let pushed = project.berth(
        &["push", "--engine", engine.flag(), "base.yaml", "app.yaml"],
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
    let exists = project.berth(&["exists", "base.yaml", "app.yaml"], "");
    assert_eq!(exists.code, 0, "{}", exists.stdout);
    for name in [&base_name, &app_name] {
        remove_local(&project, name);
    }
}

/// `berth push` on an engine that lacks the image (built with `--no-push` on another) says which engine has it and
/// the command that pushes from there, which works.
#[test]
fn a_push_from_the_wrong_engine_names_the_engine_that_has_the_image() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let project = Project::new(Engine::Podman);
    project.write(
        "spec.yaml",
        &format!(
            "name: {}\nregistry: {}/berth-e2e\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
            unique("elsewhere"),
            env.registry,
            env.python_image,
            env.uv_image
        ),
    );
    log_in(&project, env);
    let built = project.build(&["--no-push", "spec.yaml"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let name = built.stdout.trim().to_string();

    let wrong = project.berth(&["push", "--engine", "docker", "spec.yaml"], "");
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(&format!(
            "{name} is not an image on docker (it is on podman)"
        )),
        "{}",
        wrong.stderr
    );
    assert_eq!(
        hinted_command(&wrong),
        "berth push --engine podman spec.yaml"
    );
    let right = project.berth(&["push", "--engine", "podman", "spec.yaml"], "");
    assert_eq!(right.code, 0, "the hinted push works: {}", right.stderr);
    remove_local(&project, &name);
}

#[test]
fn docker_pushes_with_berths_client_repeatably() {
    pushes_with_berths_client(Engine::Docker);
}

#[test]
fn podman_pushes_with_berths_client_repeatably() {
    pushes_with_berths_client(Engine::Podman);
}

#[test]
fn rootless_podman_pushes_with_berths_client_repeatably() {
    pushes_with_berths_client(Engine::PodmanRootless);
}

/// `berth push` of a Docker or Podman image is berth's own (it reads the engine's storage, compresses the layers
/// and remembers the blobs it made in its cache folder); pushed again from the export with an empty cache it
/// compresses anew to the same manifest digest; the result pulls and runs on Docker and Podman and pulls complete on containerd; `--push-via engine`
/// still pushes through the engine.
fn pushes_with_berths_client(engine: Engine) {
    let env = TestEnv::get();
    let (project, name) = built_for_push(engine, "own-push", "berth");

    // -v: the push says whether it read the engine's storage or its export, and why
    let push = |cache: &str, extra: &[&str]| {
        let cache = project.path().join(cache).display().to_string();
        let mut args = vec!["-v", "push", "--engine", engine.flag()];
        args.extend_from_slice(extra);
        args.push("spec.yaml");
        let run = project.berth_with(&args, "", &[("BERTH_CACHE_DIR", &cache)]);
        assert_eq!(run.code, 0, "push {extra:?}: {}", run.stderr);
        let (reference, digest) = run.stdout.trim().split_once('@').expect("name@digest");
        assert_eq!(reference, name);
        assert_eq!(
            registry_digest(env, reference),
            digest,
            "the registry holds what berth printed"
        );
        (digest.to_string(), run.stderr)
    };
    let engine_name = match engine {
        Engine::Docker => "docker",
        _ => "podman",
    };
    let (first, said) = push("cache-a", &[]);
    let from_storage = said.contains(&format!("from {engine_name}'s storage"));
    if engine == Engine::PodmanRootless {
        // berth runs as the rootless user here: files the image's other users own (mapped to sub-ids) may be
        // unreadable to it, and then the export is the way
        assert!(
            from_storage || said.contains("Permission denied"),
            "storage, or the export because a file is unreadable: {said}"
        );
    } else {
        assert!(from_storage, "read from {engine_name}'s storage: {said}");
    }
    let remembered = project.path().join("cache-a/pushed/layers");
    let count = std::fs::read_dir(&remembered)
        .map(|d| d.count())
        .unwrap_or(0);
    assert!(
        count > 0,
        "berth compressed the layers itself and remembered them in {}",
        remembered.display()
    );
    let (exported, said) = push("cache-b", &["--push-via", "export"]);
    assert!(
        said.contains(&format!("pushing from {engine_name}'s export")),
        "{said}"
    );
    assert_eq!(
        exported, first,
        "compressed anew from the export, the same manifest as from the storage"
    );
    assert_eq!(
        push("cache-a", &[]).0,
        first,
        "from memory, the same manifest"
    );

    let pinned = format!("{}@{first}", name.rsplit_once(':').expect("tag").0);
    for runner in ["docker", "podman"] {
        let (ok, out) = match runner {
            "docker" => tool(
                "docker",
                &[
                    "--config",
                    &project.config().display().to_string(),
                    "pull",
                    &pinned,
                ],
            ),
            _ => tool(
                "podman",
                &[
                    "pull",
                    "--tls-verify=false",
                    "--creds",
                    &env.creds_arg(),
                    &pinned,
                ],
            ),
        };
        assert!(ok, "{runner} pull of berth's push from {engine:?}: {out}");
        let (ok, out) = tool(
            runner,
            &["run", "--rm", &pinned, "sh", "-c", "echo $PUSHED_BY"],
        );
        assert!(
            ok && out.trim() == "berth",
            "{runner} run of berth's push from {engine:?}: {out}"
        );
        let _ = tool(runner, &["rmi", "-f", &pinned]);
    }
    let namespace = unique("own-push");
    let (ok, out) = tool(
        "ctr",
        &[
            "--namespace",
            &namespace,
            "images",
            "pull",
            "--plain-http",
            "--user",
            &env.creds_arg(),
            &pinned,
        ],
    );
    assert!(ok, "containerd pull of berth's push from {engine:?}: {out}");
    let (ok, out) = tool("ctr", &["--namespace", &namespace, "images", "check"]);
    assert!(
        ok && out.contains("complete"),
        "containerd has all of it: {out}"
    );
    // `--sync` waits for containerd's collector, so the namespace is empty (and removable) when it returns
    let _ = tool(
        "ctr",
        &["--namespace", &namespace, "images", "rm", "--sync", &pinned],
    );
    let (ok, out) = tool("ctr", &["namespaces", "rm", &namespace]);
    assert!(ok, "the test's containerd namespace is removed: {out}");

    push("cache-c", &["--push-via", "engine"]);
    assert!(
        !project.path().join("cache-c/pushed").exists(),
        "the engine pushed: berth compressed nothing"
    );
    remove_local(&project, &name);
}

/// berth as root reads the rootless Podman user's storage (as skopeo's `containers-storage:` can, given the
/// user's graph root): the image built by that user's service pushes from the storage to the manifest digest
/// the user's own `--push-via export` push gives.
#[test]
fn root_pushes_a_rootless_podman_image_from_its_storage() {
    let env = TestEnv::get();
    let (project, name) = built_for_push(Engine::PodmanRootless, "root-reads-rootless", "root");
    let cache = project.path().join("cache-export").display().to_string();
    let exported = project.berth_with(
        &[
            "-v",
            "push",
            "--engine",
            "podman",
            "--push-via",
            "export",
            "spec.yaml",
        ],
        "",
        &[("BERTH_CACHE_DIR", &cache)],
    );
    assert_eq!(exported.code, 0, "{}", exported.stderr);

    let cache = project.path().join("cache-root").display().to_string();
    let mut command = std::process::Command::new(berth_tests::berth_bin());
    command
        .env("DOCKER_CONFIG", project.config())
        .env(
            "CONTAINER_HOST",
            format!("unix://{}", env.podman_rootless_socket.display()),
        )
        .env("BERTH_CACHE_DIR", &cache)
        .args(["-v", "push", "--engine", "podman", "spec.yaml"])
        .current_dir(project.path());
    let out = command.output().expect("run berth as root");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("from podman's storage"), "{stderr}");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        exported.stdout.trim(),
        "the same name and manifest digest as from the export"
    );
    remove_local(&project, &name);
}

/// A project on `engine` logged in to the test registry, with a Python spec (named from `prefix`, `PUSHED_BY` set
/// to `pushed_by`) built and not pushed; and the image's name.
fn built_for_push(engine: Engine, prefix: &str, pushed_by: &str) -> (Project, String) {
    let env = TestEnv::get();
    let project = Project::new(engine);
    project.write(
        "spec.yaml",
        &format!(
            "name: {}\nregistry: {}/berth-e2e\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             env: {{PUSHED_BY: {pushed_by}}}\nbuilder_config: {{uv_image: \"{}\"}}\n\
             builder_options: {{install_flytekit: false}}\n",
            unique(prefix),
            env.registry,
            env.python_image,
            env.uv_image
        ),
    );
    log_in(&project, env);
    let built = project.build(&["--no-push", "spec.yaml"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let name = built.stdout.trim().to_string();
    (project, name)
}

/// The `Config.Env` of a local image in the project's engine, as that engine's own CLI reports it.
fn local_env(project: &Project, image: &str) -> Option<String> {
    let args = ["image", "inspect", "--format", "{{.Config.Env}}", image];
    let (ok, out) = engine_cli(project, &args);
    ok.then_some(out)
}

/// Removes a local image from the project's engine (containerd's through `ctr`, in berth's default namespace; LXD's
/// from berth's store).
fn remove_local(project: &Project, image: &str) {
    let _ = match project.engine {
        Engine::Containerd => tool("ctr", &["--namespace", "default", "images", "rm", image]),
        Engine::Lxd => {
            // LXD keeps no OCI images: berth's store is read through the backend itself
            let runtime = tokio::runtime::Runtime::new().expect("runtime");
            runtime.block_on(async {
                use berth_core::engine::{ContainerEngine as _, RemoveOptions};
                let engine = berth_backend_lxd::LxdEngine::connect(Default::default())
                    .await
                    .expect("connect to LXD");
                let removed = engine.remove(image, RemoveOptions::default()).await;
                (removed.is_ok(), format!("{removed:?}"))
            })
        }
        _ => engine_cli(project, &["rmi", "-f", image]),
    };
}

/// Runs the engine's own CLI (`docker`, `podman`, or `podman` as the rootless user).
fn engine_cli(project: &Project, args: &[&str]) -> (bool, String) {
    match project.engine {
        Engine::Docker => tool("docker", args),
        Engine::Podman => tool("podman", args),
        Engine::Containerd | Engine::Lxd => {
            panic!(
                "no test runs an engine CLI for {:?}: {args:?}",
                project.engine
            )
        }
        Engine::PodmanRootless => {
            let mut command = rootless_user().command(&[], Path::new("podman"));
            let out = command
                .arg("--remote")
                .args(args)
                .output()
                .expect("run podman as the rootless user");
            let text = String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr);
            (out.status.success(), text)
        }
    }
}

#[test]
fn docker_builds_a_project_and_locks_it() {
    project_round_trip(Engine::Docker);
}

#[test]
fn podman_builds_a_project_and_locks_it() {
    project_round_trip(Engine::Podman);
}

#[test]
fn containerd_builds_a_project_and_locks_it() {
    project_round_trip(Engine::Containerd);
}

#[test]
fn lxd_builds_a_project_and_locks_it() {
    project_round_trip(Engine::Lxd);
}

#[test]
fn rootless_podman_builds_a_project_and_locks_it() {
    project_round_trip(Engine::PodmanRootless);
}

/// A project: a shared base spec file named twice, an inline spec built on it, a task with no image. `berth build`
/// (engine and registry from berth.yaml) builds the two distinct images, base first, writes berth.lock with a
/// digest for every task (the default image's asked of the registry); `--check` passes; a second run contacts no
/// engine and leaves the lock as it was; changing a spec makes `--check` fail naming the task.
fn project_round_trip(engine: Engine) {
    let Some(env) = engine.selected() else {
        return;
    };
    let project = Project::new(engine);
    let registry = format!("{}/{}", env.registry, unique("project"));
    let common = format!(
        "python_exec: /usr/bin/python3\nbuilder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
        env.uv_image
    );
    project.write(
        "specs/base.yaml",
        &format!(
            "name: base\nbase_image: {}\npackages: [\"six==1.16.0\"]\n{common}",
            env.python_image
        ),
    );
    let berth_yaml = |app_env: &str| {
        format!(
            r#"engine: {{name: {engine}}}
registry: {registry}
default_image: {default}
images:
  base: specs/base.yaml
  base-again: specs/base.yaml
  app:
    name: app
    base_image: {{spec: specs/base.yaml}}
    python_exec: /usr/bin/python3
    env: {{STAGE: "{app_env}"}}
    builder_config: {{uv_image: "{uv}"}}
    builder_options: {{install_flytekit: false}}
tasks:
  prepare: base
  check: base-again
  train: app
  report:
"#,
            engine = engine.flag(),
            default = env.busybox_image,
            uv = env.uv_image,
        )
    };
    project.write("berth.yaml", &berth_yaml("train"));
    log_in(&project, env);

    let check = project.berth(&["build", "--check"], "");
    assert_eq!(check.code, 1, "no lock yet: {}", check.stderr);
    assert!(
        check.stderr.contains("berth.lock does not exist"),
        "{}",
        check.stderr
    );

    let first = project.berth(&["build"], "");
    assert_eq!(first.code, 0, "project build failed:\n{}", first.stderr);
    assert!(
        first.stderr.contains(&format!(
            "engine: {} (from {})",
            engine.flag(),
            project.path().join("berth.yaml").display()
        )),
        "the engine comes from berth.yaml:\n{}",
        first.stderr
    );
    let built: Vec<&str> = first.stdout.lines().collect();
    assert_eq!(built.len(), 2, "two distinct images, base first: {built:?}");
    assert!(
        built[0].starts_with(&format!("{registry}/base:")),
        "{built:?}"
    );
    assert!(
        built[1].starts_with(&format!("{registry}/app:")),
        "{built:?}"
    );

    let lock_text =
        std::fs::read_to_string(project.path().join("berth.lock")).expect("berth.lock written");
    let lock: serde_json::Value = serde_json::from_str(&lock_text).expect("lock is JSON");
    let task = |name: &str| lock["tasks"][name].as_str().unwrap_or_default().to_string();
    assert_eq!(task("prepare"), built[0], "{lock_text}");
    assert_eq!(
        task("check"),
        built[0],
        "the same spec twice is one image: {lock_text}"
    );
    assert_eq!(task("train"), built[1], "{lock_text}");
    for reference in [task("prepare"), task("train"), task("report")] {
        let (name, digest) = reference.split_once('@').expect("immutable reference");
        assert_eq!(
            registry_digest(env, name),
            digest,
            "the lock's digest is the registry's: {reference}"
        );
    }
    assert!(
        task("report").starts_with(&format!("{}@sha256:", env.busybox_image)),
        "{lock_text}"
    );
    assert_eq!(
        lock["default_image"].as_str(),
        Some(task("report").as_str())
    );

    let check = project.berth(&["build", "--check"], "");
    assert_eq!(check.code, 0, "the lock is current: {}", check.stderr);

    let second = project.berth(&["build"], "");
    assert_eq!(second.code, 0, "{}", second.stderr);
    assert!(
        !second.stderr.contains("engine:"),
        "a second run contacts no engine:\n{}",
        second.stderr
    );
    assert_eq!(
        std::fs::read_to_string(project.path().join("berth.lock")).expect("lock"),
        lock_text,
        "a no-op run leaves the lock as it was"
    );
    assert!(
        second.stderr.contains("berth.lock is up to date") && !second.stderr.contains("wrote "),
        "a no-op run says the lock is current rather than written:\n{}",
        second.stderr
    );
    assert!(
        second.stderr.rfind("already in the registry")
            < second.stderr.find("berth.lock is up to date"),
        "the lock line sums up the images' lines, after them:\n{}",
        second.stderr
    );

    // For scripts: the same no-op run as JSON, and asked whether a cluster without credentials could pull the
    // images (no: the test registry wants a login), which fails the run and says what to do.
    let json = project.berth(&["build", "--json", "--verify-public"], "");
    assert_eq!(json.code, 1, "the images are not public: {}", json.stderr);
    assert!(
        json.stderr
            .contains("verify-public: 0 of 2 images can be pulled without credentials"),
        "{}",
        json.stderr
    );
    let report: serde_json::Value = serde_json::from_str(&json.stdout).expect("--json prints JSON");
    let statuses: Vec<&str> = report["images"]
        .as_array()
        .expect("images")
        .iter()
        .map(|i| i["status"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(statuses, ["present", "present"], "{}", json.stdout);
    assert_eq!(
        report["tasks"]["train"].as_str(),
        Some(task("train").as_str())
    );
    assert_eq!(
        report["images"][0]["wanted_by"],
        serde_json::json!(["base", "base-again"]),
        "{}",
        json.stdout
    );

    project.write("berth.yaml", &berth_yaml("changed"));
    let check = project.berth(&["build", "--check"], "");
    assert_eq!(
        check.code, 1,
        "a changed spec makes the lock stale: {}",
        check.stderr
    );
    assert!(check.stderr.contains("task `train`"), "{}", check.stderr);
    assert!(
        !check.stderr.contains("task `prepare`"),
        "only what changed: {}",
        check.stderr
    );

    for name in built {
        remove_local(&project, name.split('@').next().unwrap_or(name));
    }
}

/// One image of a project fails: the image built on it is not attempted, an independent image still builds and
/// is pushed, the errors name the images, the project entries and the tasks left without an image, and no
/// berth.lock is written (a deploy step must not pick up half a set).
#[test]
fn a_failing_image_stops_only_what_depends_on_it() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let project = Project::new(Engine::Docker);
    let registry = format!("{}/{}", env.registry, unique("partial"));
    let common = format!(
        "base_image: {}\npython_exec: /usr/bin/python3\nbuilder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
        env.python_image, env.uv_image
    );
    project.write(
        "good.yaml",
        &format!("name: good\nenv: {{OK: \"1\"}}\n{common}"),
    );
    project.write(
        "bad.yaml",
        &format!("name: bad\ncommands: [\"echo broken-on-purpose >&2; exit 3\"]\n{common}"),
    );
    project.write(
        "child.yaml",
        "name: child\nbase_image: {spec: bad.yaml}\npython_exec: /usr/bin/python3\nbuilder_options: {install_flytekit: false}\n",
    );
    project.write(
        "berth.yaml",
        &format!(
            "registry: {registry}\nimages:\n  good: good.yaml\n  bad: bad.yaml\n  child: child.yaml\ntasks:\n  fine: good\n  broken: bad\n  downstream: child\n"
        ),
    );
    log_in(&project, env);
    let run = project.berth(&["build", "--engine", "docker", "-j", "1"], "");
    assert_eq!(run.code, 1, "a failed build fails the run:\n{}", run.stderr);
    let pushed: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(pushed.len(), 1, "only the good image: {pushed:?}");
    assert!(
        pushed[0].starts_with(&format!("{registry}/good:")),
        "{pushed:?}"
    );
    let (name, digest) = pushed[0].split_once('@').expect("name@digest");
    assert_eq!(
        registry_digest(env, name),
        digest,
        "what succeeded is in the registry"
    );
    assert!(
        run.stderr.contains("broken-on-purpose") && run.stderr.contains("(bad)"),
        "the failure carries the step's output and the project entry:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("not built: its base image") && run.stderr.contains("(child)"),
        "the dependent image is not attempted:\n{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("task `broken`") && run.stderr.contains("task `downstream`"),
        "the tasks left without an image are named:\n{}",
        run.stderr
    );
    assert!(!run.stderr.contains("task `fine`"), "{}", run.stderr);
    assert!(
        !project.path().join("berth.lock").exists(),
        "no lock is written for a partial set"
    );
    let not_updated = run
        .stderr
        .find("berth.lock not updated")
        .expect("the lock is mentioned");
    assert!(
        run.stderr.find("broken-on-purpose") < Some(not_updated)
            && run.stderr.find("not built: its base image") < Some(not_updated),
        "`see the errors above` comes after the errors:\n{}",
        run.stderr
    );
    remove_local(&project, name);
}

#[test]
fn docker_derived_image_keeps_base_packages_uv_0_5() {
    derived_image_keeps_base_packages(Engine::Docker, |env| &env.uv_image);
}

#[test]
fn podman_derived_image_keeps_base_packages_current_uv() {
    derived_image_keeps_base_packages(Engine::Podman, |env| &env.uv_current_image);
}

#[test]
fn rootless_podman_derived_image_keeps_base_packages_uv_0_5() {
    derived_image_keeps_base_packages(Engine::PodmanRootless, |env| &env.uv_image);
}

#[test]
fn containerd_derived_image_keeps_base_packages_current_uv() {
    derived_image_keeps_base_packages(Engine::Containerd, |env| &env.uv_current_image);
}

/// A spec built on another spec, both installing packages into the venv: the derived image keeps the base's
/// packages (uv 0.5 replaced an existing venv, current uv refuses one), checked by importing both in the pushed
/// image, pulled and run by Docker.
fn derived_image_keeps_base_packages(engine: Engine, uv_image: fn(&TestEnv) -> &str) {
    let Some(env) = engine.selected() else {
        return;
    };
    let uv_image = uv_image(env);
    let project = Project::new(engine);
    let common = format!(
        "registry: {}/berth-e2e\npython_exec: /usr/bin/python3\nbuilder_config: {{uv_image: \"{uv_image}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
        env.registry
    );
    project.write(
        "base.yaml",
        &format!(
            "name: {}\nbase_image: {}\npackages: [\"six==1.16.0\"]\n{common}",
            unique("venv-base"),
            env.python_image
        ),
    );
    project.write(
        "app.yaml",
        &format!(
            "name: {}\nbase_image: {{spec: base.yaml}}\npackages: [\"idna==3.7\"]\n{common}",
            unique("venv-app")
        ),
    );
    log_in(&project, env);
    let built = project.build(&["app.yaml"]);
    assert_eq!(built.code, 0, "{}", built.stderr);
    let app = built
        .stdout
        .lines()
        .last()
        .expect("the app's reference")
        .to_string();
    let config = project.config().display().to_string();
    let (ok, out) = tool("docker", &["--config", &config, "pull", &app]);
    assert!(ok, "docker pull {app}: {out}");
    let script = "import six, idna; print(six.__version__, idna.__version__)";
    let (ok, out) = tool("docker", &["run", "--rm", &app, "python", "-c", script]);
    let _ = tool("docker", &["rmi", "-f", &app]);
    assert!(
        ok && out.trim() == "1.16.0 3.7",
        "the {engine:?}-built app (uv {uv_image}) has its base's six and its own idna: {out}"
    );
}

#[test]
fn docker_builds_two_apt_specs_at_once() {
    two_apt_builds_at_once(Engine::Docker);
}

#[test]
fn podman_builds_two_apt_specs_at_once() {
    two_apt_builds_at_once(Engine::Podman);
}

#[test]
fn rootless_podman_builds_two_apt_specs_at_once() {
    two_apt_builds_at_once(Engine::PodmanRootless);
}

#[test]
fn containerd_builds_two_apt_specs_at_once() {
    two_apt_builds_at_once(Engine::Containerd);
}

/// Two `berth build --no-cache` processes started together, each running apt and uv on the shared caches: both
/// succeed. (apt gives up at once when another process holds its lock, so whoever mounts the caches must let one
/// step at a time use them; on Podman before the step lock, one of these failed with `Could not get lock`.)
fn two_apt_builds_at_once(engine: Engine) {
    let Some(env) = engine.selected() else {
        return;
    };
    let project = Project::new(engine);
    let mut names = Vec::new();
    for file in ["one.yaml", "two.yaml"] {
        let name = unique(&format!("apt-{}", file.trim_end_matches(".yaml")));
        project.write(
            file,
            &format!(
                "name: {name}\nregistry: {}/berth-e2e\nbase_image: {}\npython_exec: /usr/bin/python3\n\
                 packages: [\"six==1.16.0\"]\napt_packages: [jq]\nenv: {{WHICH: {name}}}\n\
                 builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
                env.registry, env.python_image, env.uv_image
            ),
        );
        names.push(project.berth(&["name", file], "").stdout.trim().to_string());
    }
    log_in(&project, env);
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| project.build(&["--no-cache", "--no-push", "one.yaml"]));
        let two = s.spawn(|| project.build(&["--no-cache", "--no-push", "two.yaml"]));
        (one.join(), two.join())
    });
    for name in &names {
        remove_local(&project, name);
    }
    for (file, run) in [("one.yaml", one), ("two.yaml", two)] {
        let run = run.expect("the build thread finished");
        assert_eq!(
            run.code, 0,
            "{engine:?}: {file}, built at the same time as the other, failed:\n{}",
            run.stderr
        );
    }
}

#[test]
fn docker_two_berths_build_one_spec_at_once() {
    two_berths_one_spec(Engine::Docker);
}

#[test]
fn podman_two_berths_build_one_spec_at_once() {
    two_berths_one_spec(Engine::Podman);
}

#[test]
fn rootless_podman_two_berths_build_one_spec_at_once() {
    two_berths_one_spec(Engine::PodmanRootless);
}

#[test]
fn containerd_two_berths_build_one_spec_at_once() {
    two_berths_one_spec(Engine::Containerd);
}

/// Two `berth build` processes started together for one missing spec: both succeed and print the same
/// reference, which is what the registry holds (one build, one image: the second waits for the first and finds
/// the image pushed).
fn two_berths_one_spec(engine: Engine) {
    let Some(env) = engine.selected() else {
        return;
    };
    let project = Project::new(engine);
    project.write(
        "spec.yaml",
        &format!(
            "name: {}\nregistry: {}/berth-e2e\nbase_image: {}\ncommands: [\"echo {} > /built\"]\n\
             builder_options: {{install_flytekit: false}}\npython_exec: /usr/bin/python3\n\
             builder_config: {{uv_image: \"{}\"}}\n",
            unique("same-spec"),
            env.registry,
            env.python_image,
            unique("token"),
            env.uv_image
        ),
    );
    log_in(&project, env);
    let (one, two) = std::thread::scope(|s| {
        let one = s.spawn(|| project.build(&["spec.yaml"]));
        let two = s.spawn(|| project.build(&["spec.yaml"]));
        (one.join().expect("thread"), two.join().expect("thread"))
    });
    assert_eq!(one.code, 0, "{engine:?}, first berth:\n{}", one.stderr);
    assert_eq!(two.code, 0, "{engine:?}, second berth:\n{}", two.stderr);
    assert_eq!(
        one.stdout.trim(),
        two.stdout.trim(),
        "both print the one image:\n{}\n---\n{}",
        one.stderr,
        two.stderr
    );
    let (reference, digest) = one.stdout.trim().split_once('@').expect("name@digest");
    assert_eq!(registry_digest(env, reference), digest);
    let built = [&one, &two]
        .iter()
        .filter(|run| run.stderr.contains("building on"))
        .count();
    assert_eq!(
        built, 1,
        "only one of them built it:\n{}\n---\n{}",
        one.stderr, two.stderr
    );
    remove_local(&project, reference);
}

#[test]
fn lxd_builds_two_apt_specs_at_once() {
    two_apt_builds_at_once(Engine::Lxd);
}

#[test]
fn lxd_two_berths_build_one_spec_at_once() {
    two_berths_one_spec(Engine::Lxd);
}

#[test]
fn docker_builds_a_project_four_at_once() {
    four_at_once(Engine::Docker);
}

#[test]
fn podman_builds_a_project_four_at_once() {
    four_at_once(Engine::Podman);
}

#[test]
fn rootless_podman_builds_a_project_four_at_once() {
    four_at_once(Engine::PodmanRootless);
}

#[test]
fn containerd_builds_a_project_four_at_once() {
    four_at_once(Engine::Containerd);
}

#[test]
fn lxd_builds_a_project_four_at_once() {
    four_at_once(Engine::Lxd);
}

/// `berth build -j 4` of a project of one base spec and four images on it, each with a RUN step of its own:
/// every image is built once, after the base, and pushed; the lock names each task's image by the digest the
/// registry holds, and each image has its own step's file and its base's.
fn four_at_once(engine: Engine) {
    let Some(env) = engine.selected() else {
        return;
    };
    let project = Project::new(engine);
    let registry = format!("{}/{}", env.registry, unique("four"));
    let token = unique("token");
    project.write(
        "specs/base.yaml",
        &format!(
            "name: base\nbase_image: {}\npython_exec: /usr/bin/python3\ncommands: [\"echo {token} > /base\"]\n\
             builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
            env.python_image, env.uv_image
        ),
    );
    let mut berth_yaml = format!(
        "engine: {{name: {}}}\nregistry: {registry}\nimages:\n  base: specs/base.yaml\n",
        engine.flag()
    );
    for n in 1..=4 {
        berth_yaml.push_str(&format!(
            "  app{n}:\n    name: app{n}\n    base_image: {{spec: specs/base.yaml}}\n    \
             python_exec: /usr/bin/python3\n    commands: [\"echo {n} > /n\"]\n    \
             builder_config: {{uv_image: \"{uv}\"}}\n    builder_options: {{install_flytekit: false}}\n",
            uv = env.uv_image
        ));
    }
    berth_yaml.push_str("tasks:\n");
    for n in 1..=4 {
        berth_yaml.push_str(&format!("  task{n}: app{n}\n"));
    }
    project.write("berth.yaml", &berth_yaml);
    log_in(&project, env);

    let run = project.berth(&["build", "-j", "4"], "");
    assert_eq!(run.code, 0, "{engine:?}, -j 4:\n{}", run.stderr);
    let built: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(built.len(), 5, "the base and four images: {built:?}");
    assert!(
        built[0].starts_with(&format!("{registry}/base:")),
        "the base first: {built:?}"
    );
    let lock_text =
        std::fs::read_to_string(project.path().join("berth.lock")).expect("berth.lock written");
    let lock: serde_json::Value = serde_json::from_str(&lock_text).expect("lock is JSON");
    for n in 1..=4 {
        let reference = lock["tasks"][format!("task{n}")]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(
            reference.starts_with(&format!("{registry}/app{n}:")),
            "task{n}: {lock_text}"
        );
        assert!(
            built.contains(&reference.as_str()),
            "{reference} in {built:?}"
        );
        let (name, digest) = reference.split_once('@').expect("immutable reference");
        assert_eq!(registry_digest(env, name), digest, "task{n}: {reference}");
        let pinned = format!("{}@{digest}", name.rsplit_once(':').expect("tag").0);
        let config = project.config().display().to_string();
        let (ok, out) = tool("docker", &["--config", &config, "pull", "-q", &pinned]);
        assert!(ok, "docker pull of app{n}: {out}");
        let (ok, out) = tool("docker", &["run", "--rm", &pinned, "cat", "/base", "/n"]);
        assert!(
            ok && out.split_whitespace().collect::<Vec<_>>() == [token.as_str(), &n.to_string()],
            "app{n} has its base's file and its own: {out}"
        );
        let _ = tool("docker", &["rmi", "-f", &pinned]);
    }
    for reference in &built {
        remove_local(
            &project,
            reference.split_once('@').map_or(reference, |(n, _)| n),
        );
    }
}

#[test]
fn eight_berth_exists_at_once_agree() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let project = Project::new(Engine::Docker);
    project.write(
        "spec.yaml",
        &format!(
            "name: {}\nregistry: {}/berth-e2e\n",
            unique("absent"),
            env.registry
        ),
    );
    log_in(&project, env);
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|_| s.spawn(|| project.berth(&["exists", "spec.yaml"], "")))
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    for run in &runs {
        assert_eq!(
            run.code, 1,
            "absent, from each of eight at once: {}",
            run.stderr
        );
        assert!(run.stdout.contains("absent"), "{}", run.stdout);
    }
}
