//! Docker's and Podman's own base pulls during a build: the daemon pulls the spec's base (dockerd's BuildKit,
//! buildah in the Podman service) into a store with less room than the base needs. The build fails with exit
//! status 6 naming `DockerRootDir` / `GraphRoot` and how to make room, no image record of the base is left
//! for a later build to trust, and the same build works once there is room.

use std::path::{Path, PathBuf};

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::small_storage::{SmallDockerd, SmallPodman};

use crate::{assert_out_of_space, berth, docker_config, text};

/// Room left in the store: less than the Python fixture's layers (78 MiB compressed, more unpacked).
const ROOM: u64 = 40 << 20;

/// A spec on the Python fixture (and the uv fixture, the builder image every spec's uv stage pulls), whose RUN
/// step echoes this run's word (no cache of an earlier run stands in).
fn project(env: &TestEnv) -> tempfile::TempDir {
    let project = tempfile::tempdir().expect("temp dir");
    let run = unique("full-base");
    std::fs::write(
        project.path().join("spec.yaml"),
        format!(
            "name: pulled\nregistry: {}/{run}\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             commands: [\"echo {run}\"]\nbuilder_config: {{uv_image: \"{}\"}}\n\
             builder_options: {{install_flytekit: false}}\n",
            env.registry, env.python_image, env.uv_image
        ),
    )
    .expect("write spec");
    project
}

/// `berth build --no-push` of `project` on `engine`.
fn build(project: &Path, engine: &str, vars: &[(&str, &Path)]) -> std::process::Output {
    let args = ["build", "--engine", engine, "--no-push", "spec.yaml"];
    berth(project, &args, vars)
}

#[test]
fn a_docker_build_whose_base_pull_fills_the_data_root_says_so_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("docker") else {
        return;
    };
    let daemon = SmallDockerd::start("400m", &env.containerd_address);
    let config = docker_config(env);
    let project = project(env);
    let host = PathBuf::from(daemon.host());
    let vars = [
        ("DOCKER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let filler = daemon.storage.fill_leaving(ROOM);
    let failed = build(project.path(), "docker", &vars);
    let place = format!(
        "Docker's storage (DockerRootDir {})",
        daemon.data_root().display()
    );
    assert_out_of_space(&failed, &place);
    println!("docker, the base does not fit:\n{}", text(&failed));
    let base = daemon.docker(&["image", "inspect", &env.python_image]);
    assert!(
        !base.status.success(),
        "no image record of a pull that did not finish: {}",
        text(&base)
    );
    std::fs::remove_file(&filler).expect("make room");
    let built = build(project.path(), "docker", &vars);
    assert!(built.status.success(), "{}", text(&built));
}

#[test]
fn a_podman_build_whose_base_pull_fills_the_graph_root_says_so_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("podman") else {
        return;
    };
    // its temporary folder roomy: what fills is the store
    let service = SmallPodman::start_with_tmp("400m", Some("600m"));
    let config = docker_config(env);
    let project = project(env);
    let host = PathBuf::from(service.host());
    let vars = [
        ("CONTAINER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let filler = service.storage.fill_leaving(ROOM);
    let failed = build(project.path(), "podman", &vars);
    let place = format!(
        "Podman's storage (GraphRoot {})",
        service.graph_root().display()
    );
    assert_out_of_space(&failed, &place);
    println!("podman, the base does not fit:\n{}", text(&failed));
    let base = service.podman(&["image", "exists", &env.python_image]);
    assert_eq!(
        base.status.code(),
        Some(1),
        "no image record of a pull that did not finish: {}",
        text(&base)
    );
    std::fs::remove_file(&filler).expect("make room");
    let built = build(project.path(), "podman", &vars);
    assert!(built.status.success(), "{}", text(&built));
}
