//! Pushes and pulls: an image built with room, then pushed while the place the push writes to is full, and a
//! build whose base pull fills the engine's storage. A push that needs room fails saying "no space left" and
//! naming that place (Podman's temporary folder, where the service copies what it pushes or exports, and
//! writes a little for every inspect; Docker's data root, where dockerd writes the export berth's
//! `--push-via export` reads), the registry holds no tag of it, and once there is room the same push works,
//! berth's own TMPDIR and cache folder being full changing nothing (berth's push spools nothing: it reads the
//! store or streams the export). berth's push from the engine's store, dockerd's own push and containerd's
//! push write nothing to disk and work on a full one. A pull into a full containerd root fails naming the
//! root and keeps no image record; the next build pulls the base whole.

use std::path::{Path, PathBuf};
use std::process::Output;

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::small_storage::{SmallContainerd, SmallDockerd, SmallPodman, SmallTmpfs};

use crate::{
    assert_out_of_space, berth, docker_config, fixtures_into_docker, fixtures_into_podman, text,
};

/// What the image's RUN step writes (random, so compression keeps it this big).
const IMAGE_FILE_MIB: u64 = 48;

/// A spec on the Python fixture whose RUN step writes [`IMAGE_FILE_MIB`] random MiB, in a repository of its
/// own (the step echoes this run's word, so no cache of an earlier run stands in).
fn push_project(env: &TestEnv) -> tempfile::TempDir {
    let project = tempfile::tempdir().expect("temp dir");
    let run = unique("full-push");
    std::fs::write(
        project.path().join("spec.yaml"),
        format!(
            "name: pushed\nregistry: {}/{run}\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             commands: [\"dd if=/dev/urandom of=/big bs=1M count={IMAGE_FILE_MIB} && echo {run}\"]\n\
             builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
            env.registry, env.python_image, env.uv_image
        ),
    )
    .expect("write spec");
    project
}

/// `berth build --no-push` of [`push_project`] on `engine`, which must work (there is room).
fn build_locally(project: &Path, engine: &str, vars: &[(&str, &Path)]) {
    let args = [
        "build",
        "--engine",
        engine,
        "--no-push",
        "--network",
        "none",
        "spec.yaml",
    ];
    let built = berth(project, &args, vars);
    assert!(built.status.success(), "{}", text(&built));
}

/// `berth push` of the project on `engine` with `--push-via via`: berth's client from the engine's store
/// ("berth", on this machine) or its export ("export"), or the engine's own push ("engine").
fn push(project: &Path, engine: &str, via: &str, vars: &[(&str, &Path)]) -> Output {
    let args = ["push", "--engine", engine, "--push-via", via, "spec.yaml"];
    berth(project, &args, vars)
}

/// Asserts that the registry holds no tag of the project (exit 1 of `berth exists`), or holds it.
fn assert_in_registry(project: &Path, vars: &[(&str, &Path)], expected: bool) {
    let exists = berth(project, &["exists", "spec.yaml"], vars);
    let code = if expected { 0 } else { 1 };
    assert_eq!(exists.status.code(), Some(code), "{}", text(&exists));
}

/// The pushes by `vias` fail naming `place` and leave no tag in the registry.
fn pushes_fail(project: &Path, engine: &str, vias: &[&str], vars: &[(&str, &Path)], place: &str) {
    for via in vias {
        let failed = push(project, engine, via, vars);
        assert_out_of_space(&failed, place);
        assert_in_registry(project, vars, false);
    }
}

/// The pushes by `vias` work, berth's with its own TMPDIR and cache folder full, and the registry has the tag.
fn pushes_work(project: &Path, engine: &str, vias: &[&str], vars: &[(&str, &Path)]) {
    let full = SmallTmpfs::new("256k");
    full.fill_leaving(0);
    let mut with_full_own = vars.to_vec();
    with_full_own.extend([("TMPDIR", full.path()), ("BERTH_CACHE_DIR", full.path())]);
    for via in vias {
        let pushed = push(project, engine, via, &with_full_own);
        assert!(pushed.status.success(), "{}", text(&pushed));
        assert_in_registry(project, vars, true);
    }
}

#[test]
fn a_podman_push_with_a_full_temporary_folder_says_so_keeps_no_tag_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("podman") else {
        return;
    };
    let service = SmallPodman::start_with_tmp("700m", Some("600m"));
    let config = docker_config(env);
    // the base and helper images first, so what fills the disk is the work under test
    fixtures_into_podman(env, &service, config.path());
    let project = push_project(env);
    let host = PathBuf::from(service.host());
    let vars = [
        ("CONTAINER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    build_locally(project.path(), "podman", &vars);
    let tmp = service.tmp.as_ref().expect("a TMPDIR of its own");
    let place = format!(
        "Podman's temporary folder (imageCopyTmpDir {})",
        tmp.path().display()
    );
    // not a byte left: Podman 4.3's inspect crashes instead of saying so
    // not a byte left: Podman 4.3's inspect crashes instead of saying so, and every push inspects first
    let filler = tmp.fill_leaving(0);
    let exported = ["export", "engine"];
    pushes_fail(
        project.path(),
        "podman",
        &["berth", "export", "engine"],
        &vars,
        &place,
    );
    // room to inspect the image, not to copy it: berth's push from the store needs no more
    std::fs::remove_file(&filler).expect("make room");
    let filler = tmp.fill_leaving(8 << 20);
    pushes_fail(project.path(), "podman", &exported, &vars, &place);
    // (the failed pushes leave Podman's partial files behind: 8 MiB again beside them)
    std::fs::remove_file(&filler).expect("make room");
    let filler = tmp.fill_leaving(8 << 20);
    pushes_work(project.path(), "podman", &["berth"], &vars);
    std::fs::remove_file(&filler).expect("make room");
    pushes_work(project.path(), "podman", &exported, &vars);
}

#[test]
fn a_docker_push_with_a_full_data_root_says_so_keeps_no_tag_and_works_with_room() {
    let Some(env) = TestEnv::for_engine("docker") else {
        return;
    };
    let daemon = SmallDockerd::start("900m", &env.containerd_address);
    let config = docker_config(env);
    // the base and helper images first, so what fills the disk is the work under test
    fixtures_into_docker(env, &daemon, config.path());
    let project = push_project(env);
    let host = PathBuf::from(daemon.host());
    let vars = [
        ("DOCKER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    build_locally(project.path(), "docker", &vars);
    let place = format!(
        "Docker's storage (DockerRootDir {})",
        daemon.data_root().display()
    );
    let filler = daemon.storage.fill_leaving(1 << 20);
    // berth's push from the export reads `docker save`, which dockerd writes under its data root first
    pushes_fail(project.path(), "docker", &["export"], &vars, &place);
    // berth's push from the store reads it where it is, dockerd's own push streams each layer: no room needed
    pushes_work(project.path(), "docker", &["berth", "engine"], &vars);
    std::fs::remove_file(&filler).expect("make room");
    pushes_work(project.path(), "docker", &["export"], &vars);
}

#[test]
fn containerd_pulls_into_a_full_root_say_so_and_its_pushes_write_nothing() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let daemon = SmallContainerd::start("640m");
    let config = docker_config(env);
    let project = push_project(env);
    let address = daemon.address();
    let state = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("CONTAINERD_ADDRESS", address.as_path()),
        ("DOCKER_CONFIG", config.path()),
        ("BERTH_CONTAINERD_STATE_DIR", state.path()),
    ];
    // the base does not fit: the build's pull fails
    let filler = daemon.storage.fill_leaving(40 << 20);
    let args = [
        "build",
        "--engine",
        "containerd",
        "--no-push",
        "--network",
        "none",
        "spec.yaml",
    ];
    let failed = berth(project.path(), &args, &vars);
    assert_out_of_space(&failed, &daemon.root().display().to_string());
    let images = daemon.ctr(&["--namespace", "default", "images", "ls", "--quiet"]);
    assert_eq!(
        String::from_utf8_lossy(&images.stdout).trim(),
        "",
        "no image record of a pull that did not finish"
    );
    let leases = daemon.ctr(&["--namespace", "default", "leases", "ls", "--quiet"]);
    assert_eq!(
        String::from_utf8_lossy(&leases.stdout).trim(),
        "",
        "no lease is left"
    );
    std::fs::remove_file(&filler).expect("make room");
    build_locally(project.path(), "containerd", &vars);
    // a push reads the content store and writes nothing: it works on a full root
    let filler = daemon.storage.fill_leaving(0);
    pushes_work(project.path(), "containerd", &["berth"], &vars);
    drop(filler);
}
