//! Out of disk (issue 15, item 6): builds ([`builds`]), pushes and pulls ([`transfers`], [`pulls`]) whose engine
//! storage, engine temporary folder or berth's own folders fill up fail with "no space left" naming the
//! place and the fix, leave nothing a later run trusts, and work once there is room. (Needs root, as the
//! suite does: it mounts tmpfs and starts daemons of its own.)

mod base_pulls;
mod builds;
mod pulls;
mod transfers;

use std::path::Path;
use std::process::{Command, Output};

use berth_tests::env::TestEnv;
use berth_tests::small_storage::{SmallDockerd, SmallPodman};
use berth_tests::users::SystemUser;

/// Runs berth in `dir` with `vars` set.
fn berth(dir: &Path, args: &[&str], vars: &[(&str, &Path)]) -> Output {
    berth_as(None, dir, args, vars)
}

/// Runs berth in `dir` with `vars` set, as `user` (who must be able to read `dir`), else as root.
fn berth_as(
    user: Option<&SystemUser>,
    dir: &Path,
    args: &[&str],
    vars: &[(&str, &Path)],
) -> Output {
    let mut command = match user {
        Some(user) => {
            let vars: Vec<String> = vars
                .iter()
                .map(|(name, value)| format!("{name}={}", value.display()))
                .collect();
            let vars: Vec<&str> = vars.iter().map(String::as_str).collect();
            user.berth(&vars, args)
        }
        None => {
            let mut command = Command::new(berth_tests::berth_bin());
            command.args(args).envs(vars.iter().copied());
            command
        }
    };
    command.current_dir(dir).output().expect("run berth")
}

/// Gives `dirs` (and what they hold) to `user`, so that berth run as the user reads them.
fn give_to(user: &SystemUser, dirs: &[&Path]) {
    for dir in dirs {
        let given = Command::new("chown")
            .arg("-R")
            .arg(format!("{}:{}", user.uid, user.gid))
            .arg(dir)
            .status()
            .expect("run chown");
        assert!(given.success(), "give {} to {}", dir.display(), user.name);
    }
}

/// What a run printed, stdout then stderr.
fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A docker config folder with the test registry's credentials (what a user's `docker login` leaves).
fn docker_config(env: &TestEnv) -> tempfile::TempDir {
    use base64::Engine as _;
    let config = tempfile::tempdir().expect("temp dir");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}:{}",
        env.registry_user,
        env.registry_password().expose()
    ));
    std::fs::write(
        config.path().join("config.json"),
        format!(
            r#"{{"auths": {{"{}": {{"auth": "{auth}"}}}}}}"#,
            env.registry
        ),
    )
    .expect("write docker config");
    config
}

/// Asserts that `out` is a failure of kind resource exhausted (exit 6) whose text names `place` and says
/// how to make room.
fn assert_out_of_space(out: &Output, place: &str) {
    let said = text(out);
    assert_eq!(out.status.code(), Some(6), "resource exhausted: {said}");
    assert!(
        said.contains("no space left in") && said.contains("(resource exhausted)"),
        "the error says what ran out: {said}"
    );
    assert!(said.contains(place), "the error names {place}: {said}");
    assert!(
        said.contains("hint: make room"),
        "and how to fix it: {said}"
    );
}

/// The base and helper images pulled into the test's dockerd first (so what fills the disk is the work under
/// test), with the credentials of `config`.
fn fixtures_into_docker(env: &TestEnv, daemon: &SmallDockerd, config: &Path) {
    for image in [&env.python_image, &env.uv_image] {
        let pulled = daemon.docker_with_config(config, &["pull", image]);
        assert!(pulled.status.success(), "{}", text(&pulled));
    }
}

/// [`fixtures_into_docker`] for the test's Podman service.
fn fixtures_into_podman(env: &TestEnv, service: &SmallPodman, config: &Path) {
    let auth = config.join("config.json").display().to_string();
    for image in [&env.python_image, &env.uv_image] {
        let pulled = service.podman(&["pull", "--tls-verify=false", "--authfile", &auth, image]);
        assert!(pulled.status.success(), "{}", text(&pulled));
    }
}
