//! berth's command line on engines over SSH (`scripts/env/remote-ssh.sh`'s remote host): `berth build`
//! through the remote rootless Podman (context streamed over SSH, progress, berth's own push reading the
//! remote engine's export), and `berth doctor` naming each remote failure with its fix.

use std::path::Path;
use std::process::{Command, Output};

use berth_tests::env::TestEnv;
use berth_tests::remote::RemoteEnv;
use berth_tests::select::selects;
use serde_json::Value;

/// berth with only `vars` naming the engines and credentials from `docker_config`.
fn berth(dir: &Path, args: &[&str], vars: &[(&str, String)]) -> Output {
    Command::new(berth_tests::berth_bin())
        .args(args)
        .current_dir(dir)
        .env("DOCKER_CONFIG", dir)
        .env("REGISTRY_AUTH_FILE", dir.join("no-podman-auth.json"))
        .env_remove("BERTH_ENGINE")
        .env_remove("CONTAINER_HOST")
        .env_remove("CONTAINER_SSHKEY")
        .env_remove("CONTAINER_CONNECTION")
        .env_remove("CONTAINERS_CONF")
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run berth")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn build_and_push_through_remote_rootless_podman() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let env = TestEnv::get();
    let remote = RemoteEnv::get();
    let dir = tempfile::tempdir().expect("tempdir");
    let token = berth_tests::conformance::support::unique("ssh-cli");
    std::fs::write(dir.path().join("payload.txt"), &token).expect("write payload");
    let spec = format!(
        "name: remote-ssh-{token}\nregistry: {}/remote-ssh\nbase_image: {}\npython_exec: /usr/bin/python3\n\
         copy: [payload.txt]\n\
         commands: [\"grep -qx {token} /root/payload.txt\"]\nbuilder_options: {{install_flytekit: false}}\n\
         builder_config: {{uv_image: \"{}\"}}\n",
        env.registry, env.python_image, env.uv_image
    );
    std::fs::write(dir.path().join("spec.yaml"), spec).expect("write spec");
    let login = Command::new(berth_tests::berth_bin())
        .args([
            "login",
            "-u",
            &env.registry_user,
            "--password-stdin",
            &env.registry,
        ])
        .env("DOCKER_CONFIG", dir.path())
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write as _;
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(env.registry_password().expose().as_bytes())?;
            child.wait_with_output()
        })
        .expect("berth login");
    assert!(login.status.success(), "{}", text(&login.stderr));
    let vars = [
        ("BERTH_ENGINE", "podman".to_string()),
        ("CONTAINER_HOST", remote.podman_rootless_url()),
        ("CONTAINER_SSHKEY", remote.ssh_key.display().to_string()),
    ];
    let out = berth(dir.path(), &["build", "spec.yaml"], &vars);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}\n{stderr}");
    // progress arrived from the remote build, and the pushed reference was printed
    assert!(stderr.contains("grep -qx"), "no step progress: {stderr}");
    let pushed = format!("{}/remote-ssh/remote-ssh-{token}:", env.registry);
    assert!(
        stdout.contains(&pushed) && stdout.contains("@sha256:"),
        "{stdout}"
    );
}

#[test]
fn doctor_names_each_remote_failure_with_its_fix() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    let dir = tempfile::tempdir().expect("tempdir");
    let cases = [
        (
            format!("ssh://root@{}:2{}", remote.addr, remote.podman_socket),
            "accepts no connection",
            "nothing answers SSH",
        ),
        (
            format!("ssh://nobody@{}{}", remote.addr, remote.podman_socket),
            "could not log in",
            "CONTAINER_SSHKEY",
        ),
        (
            format!("ssh://root@{}/run/berth-remote/missing.sock", remote.addr),
            "does not exist on the remote host",
            "podman system service",
        ),
        (
            format!(
                "ssh://{}@{}{}",
                remote.user, remote.addr, remote.podman_socket
            ),
            "may not open the engine's socket",
            "usermod -aG",
        ),
    ];
    for (host, message, fix) in cases {
        let vars = [
            ("CONTAINER_HOST", host.clone()),
            ("CONTAINER_SSHKEY", remote.ssh_key.display().to_string()),
        ];
        let out = berth(dir.path(), &["doctor", "--json"], &vars);
        let report: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("doctor --json: {e}\n{}", text(&out.stderr)));
        let podman = report["engines"]
            .as_array()
            .and_then(|engines| engines.iter().find(|e| e["engine"] == "podman"))
            .unwrap_or_else(|| panic!("no podman in {report:#}"));
        assert_eq!(podman["status"], "warning", "{host}: {podman:#}");
        let said = podman["message"].as_str().unwrap_or_default();
        assert!(said.contains(message), "{host}: {said}");
        let fixed = podman["fix"].as_str().unwrap_or_default();
        assert!(fixed.contains(fix), "{host}: {fixed}");
    }
}

/// `berth engines`' line for Podman, with `vars` set.
fn podman_row(dir: &Path, vars: &[(&str, String)]) -> String {
    let out = berth(dir, &["engines"], vars);
    let all = text(&out.stdout) + &text(&out.stderr);
    all.lines()
        .skip_while(|line| !line.starts_with("podman"))
        .take(2)
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn connections_podman_records_name_the_remote_service() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    let dir = tempfile::tempdir().expect("tempdir");
    // the containers.conf `podman system connection add` writes to (podman wants the file to exist)
    let conf = dir.path().join("containers.conf");
    std::fs::write(&conf, "").expect("write containers.conf");
    let added = Command::new("podman")
        .args(["system", "connection", "add", "--identity"])
        .arg(&remote.ssh_key)
        .args(["build-box", &remote.podman_url()])
        .env("CONTAINERS_CONF", &conf)
        .output()
        .expect("run podman system connection add");
    assert!(added.status.success(), "{}", text(&added.stderr));
    let conf_var = ("CONTAINERS_CONF", conf.display().to_string());

    // the default connection (the first one added is the default): berth reaches the remote service through it
    let row = podman_row(dir.path(), std::slice::from_ref(&conf_var));
    assert!(
        row.contains("reachable")
            && row.contains("ssh://root@")
            && row.contains("/run/berth-remote/"),
        "podman through the default connection: {row}"
    );
    // by name, as `podman --connection` or CONTAINER_CONNECTION names it
    let named = [
        conf_var.clone(),
        ("CONTAINER_CONNECTION", "build-box".to_string()),
    ];
    let row = podman_row(dir.path(), &named);
    assert!(
        row.contains("reachable") && row.contains("/run/berth-remote/"),
        "{row}"
    );
    let config = berth(dir.path(), &["config"], &named);
    let shown = text(&config.stdout);
    assert!(
        shown.lines().any(|l| l.contains("podman connection")
            && l.contains("build-box")
            && l.contains("CONTAINER_CONNECTION")),
        "berth config names the connection and its source:\n{shown}"
    );
    // a name nothing records: an error listing the recorded ones, with the command that records one
    let unknown = [
        conf_var,
        ("CONTAINER_CONNECTION", "no-such-box".to_string()),
    ];
    let row = podman_row(dir.path(), &unknown);
    assert!(
        row.contains("`no-such-box` is not recorded")
            && row.contains("build-box")
            && row.contains("podman system connection add"),
        "{row}"
    );
}
