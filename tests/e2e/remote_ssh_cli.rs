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
