//! Engines reached over SSH that cannot be used: each failure is a clear `EngineUnavailable` error naming
//! the setting and the fix, against the real remote host of `scripts/env/remote-ssh.sh` (its sshd, its
//! sockets, its users).

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_core::{Error, ErrorKind};
use berth_tests::remote::RemoteEnv;
use berth_tests::select::selects;

async fn podman_at(url: String) -> Error {
    let remote = RemoteEnv::get();
    PodmanEngine::connect(PodmanOptions {
        socket: Some(url),
        ssh_key: Some(remote.ssh_key.display().to_string()),
        ..PodmanOptions::default()
    })
    .await
    .expect_err("the engine must not be usable")
}

fn assert_says(err: &Error, message: &str, hint: &str) {
    assert_eq!(err.kind(), ErrorKind::EngineUnavailable, "{err:?}");
    assert!(err.to_string().contains(message), "{err}");
    let said = err.hint().unwrap_or_default();
    assert!(said.contains(hint), "hint: {said}");
}

#[tokio::test]
async fn a_host_without_sshd_is_unreachable_and_names_the_setting() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    // port 2 of the remote host: the host is up, nothing listens
    let err = podman_at(format!(
        "ssh://root@{}:2{}",
        remote.addr, remote.podman_socket
    ))
    .await;
    assert_says(&err, "accepts no connection", "CONTAINER_HOST");
}

#[tokio::test]
async fn a_refused_login_says_how_to_authorize_the_key() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    // sshd there lets only root and the rootless user in
    let err = podman_at(format!(
        "ssh://nobody@{}{}",
        remote.addr, remote.podman_socket
    ))
    .await;
    assert_says(&err, "could not log in", "CONTAINER_SSHKEY");
    assert!(
        err.to_string().contains("Permission denied"),
        "ssh's words are kept: {err}"
    );
}

#[tokio::test]
async fn a_missing_remote_socket_is_named() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    let err = podman_at(format!(
        "ssh://root@{}/run/berth-remote/missing.sock",
        remote.addr
    ))
    .await;
    assert_says(
        &err,
        "does not exist on the remote host",
        "podman system service",
    );
    assert!(
        err.to_string().contains("/run/berth-remote/missing.sock"),
        "{err}"
    );
}

#[tokio::test]
async fn a_remote_user_outside_the_sockets_group_is_told_so() {
    if !selects(Some("podman_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    // root's service socket, as the rootless user: it exists, that user may not open it
    let err = podman_at(format!(
        "ssh://{}@{}{}",
        remote.user, remote.addr, remote.podman_socket
    ))
    .await;
    assert_says(&err, "may not open the engine's socket", "usermod -aG");
}

async fn docker_at(host: String) -> Error {
    use berth_backend_docker::{DockerEngine, DockerOptions};
    DockerEngine::connect(DockerOptions {
        host: Some(host),
        ..DockerOptions::default()
    })
    .await
    .expect_err("the engine must not be usable")
}

#[tokio::test]
async fn docker_on_a_host_without_sshd_names_docker_host() {
    if !selects(Some("docker_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    let err = docker_at(format!("ssh://root@{}:2", remote.addr)).await;
    assert_says(
        &err,
        "accepts no connection",
        "nothing answers SSH at the host DOCKER_HOST",
    );
}

#[tokio::test]
async fn docker_with_a_refused_login_says_how_to_authorize_the_key() {
    if !selects(Some("docker_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    let err = docker_at(format!("ssh://nobody@{}", remote.addr)).await;
    assert_says(&err, "could not log in", "~/.ssh/config");
}

#[tokio::test]
async fn docker_as_a_remote_user_outside_the_docker_group_carries_the_remote_error() {
    if !selects(Some("docker_ssh")) {
        return;
    }
    let remote = RemoteEnv::get();
    // the rootless user may log in, but not use the remote host's /var/run/docker.sock
    let err = docker_at(format!("ssh://{}@{}", remote.user, remote.addr)).await;
    assert_says(&err, "the remote command failed", "dial-stdio");
    assert!(
        err.to_string().contains("permission denied"),
        "the remote docker's words are kept: {err}"
    );
}
