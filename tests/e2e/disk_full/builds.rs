//! Builds: berth's own folders full: the digest cache (`BERTH_CACHE_DIR`) and the containerd builder's state folder
//! (`BERTH_CONTAINERD_STATE_DIR`) on a small tmpfs filled to the last byte. Naming still works (the cache is only a
//! cache, and never trusts a half-written entry); a containerd build fails saying "no space left" and naming the
//! folder; the next run with space succeeds. (Needs root, as the suite does: it mounts the tmpfs.)
//!
//! And each engine's own storage full: a daemon of the test's own whose storage is a small tmpfs
//! ([`berth_tests::small_storage`]), filled but for a little room, and a project whose RUN step writes more
//! than that. The build fails saying "no space left" and naming the engine's storage, with a hint; neither
//! berth.lock, the registry nor the engine holds anything of it; after making room the same build works and
//! its image holds the whole file.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::project::rootless_user;
use berth_tests::small_storage::{
    SmallContainerd, SmallDockerd, SmallLxdPool, SmallPodman, SmallTmpfs,
};

use crate::{
    assert_out_of_space, berth, berth_as, docker_config, fixtures_into_docker,
    fixtures_into_podman, give_to, text,
};

/// A tmpfs of 256 KiB, full to the last byte, unmounted when dropped.
fn full_disk() -> SmallTmpfs {
    let disk = SmallTmpfs::new("256k");
    disk.fill_leaving(0);
    disk
}

/// A spec with a copied folder (its digest is what the cache would keep).
fn project() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::create_dir_all(dir.path().join("data")).expect("mkdir");
    for n in 0..50 {
        std::fs::write(
            dir.path().join(format!("data/{n}.txt")),
            format!("file {n}\n").repeat(200),
        )
        .expect("write");
    }
    std::fs::write(
        dir.path().join("spec.yaml"),
        "name: full-disk\nregistry: 127.0.0.1:5000/berth-e2e\ncopy: [data]\n",
    )
    .expect("write");
    dir
}

#[test]
fn naming_works_when_the_digest_cache_cannot_be_written() {
    let project = project();
    let full = full_disk();
    let roomy = tempfile::tempdir().expect("temp dir");
    let on_full = berth(
        project.path(),
        &["name", "spec.yaml"],
        &[("BERTH_CACHE_DIR", full.path())],
    );
    assert!(on_full.status.success(), "{}", text(&on_full));
    let on_roomy = berth(
        project.path(),
        &["name", "spec.yaml"],
        &[("BERTH_CACHE_DIR", roomy.path())],
    );
    assert!(on_roomy.status.success(), "{}", text(&on_roomy));
    assert_eq!(
        on_full.stdout, on_roomy.stdout,
        "the same name with and without a usable cache"
    );
    // and the roomy cache now answers (a second run reads it)
    let again = berth(
        project.path(),
        &["name", "spec.yaml"],
        &[("BERTH_CACHE_DIR", roomy.path())],
    );
    assert_eq!(again.stdout, on_roomy.stdout);
}

#[test]
fn a_containerd_build_with_a_full_state_folder_says_so_and_the_next_one_works() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let project = tempfile::tempdir().expect("temp dir");
    std::fs::write(project.path().join("big.bin"), vec![7u8; 1 << 20]).expect("write");
    let name = unique("full-state");
    std::fs::write(
        project.path().join("spec.yaml"),
        format!(
            "name: {name}\nbase_image: {}\npython_exec: /usr/bin/python3\ncopy: [big.bin]\n\
             builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
            env.python_image, env.uv_image
        ),
    )
    .expect("write");
    let config = docker_config(env);
    let full = full_disk();
    let args = [
        "build",
        "--engine",
        "containerd",
        "--no-push",
        "--no-cache",
        "spec.yaml",
    ];
    let vars = |state: &Path| -> Vec<(&'static str, PathBuf)> {
        vec![
            ("BERTH_CONTAINERD_STATE_DIR", state.to_path_buf()),
            ("DOCKER_CONFIG", config.path().to_path_buf()),
        ]
    };
    let run = |state: &Path| {
        let owned = vars(state);
        let refs: Vec<(&str, &Path)> = owned.iter().map(|(k, v)| (*k, v.as_path())).collect();
        berth(project.path(), &args, &refs)
    };
    let failed = run(full.path());
    let said = text(&failed);
    assert!(
        !failed.status.success(),
        "a full state folder cannot hold the layer: {said}"
    );
    assert!(
        said.to_lowercase().contains("no space left"),
        "the error says what ran out: {said}"
    );
    assert!(
        said.contains(&full.path().display().to_string()),
        "the error names the folder: {said}"
    );
    let roomy = tempfile::tempdir().expect("temp dir");
    let worked = run(roomy.path());
    assert!(worked.status.success(), "{}", text(&worked));
    let _ = Command::new("ctr")
        .args(["--namespace", "default", "images", "rm"])
        .arg(String::from_utf8_lossy(&worked.stdout).trim())
        .output();
}

/// What the RUN step of [`storage_project`] writes: more than the room left on a filled engine storage.
const BIG_FILE: u64 = 128 << 20;

/// Room left on the engine's storage when it is filled: enough for the build's bookkeeping, not for the file.
const ROOM: u64 = 40 << 20;

/// A project of one image on the Python fixture whose RUN step writes [`BIG_FILE`] bytes to /big, pushing to
/// a repository of its own. The step echoes a word of this run's, so no step cache of an earlier run (LXD's
/// state folder is the machine's) stands in for it.
fn storage_project(env: &TestEnv, engine: &str) -> tempfile::TempDir {
    let project = tempfile::tempdir().expect("temp dir");
    let run = unique("full-storage");
    let registry = format!("{}/{run}", env.registry);
    std::fs::write(
        project.path().join("big.yaml"),
        format!(
            "name: big\nbase_image: {}\npython_exec: /usr/bin/python3\n\
             commands: [\"dd if=/dev/zero of=/big bs=1M count={} && echo {}\"]\n\
             builder_config: {{uv_image: \"{}\"}}\nbuilder_options: {{install_flytekit: false}}\n",
            env.python_image,
            BIG_FILE >> 20,
            run,
            env.uv_image
        ),
    )
    .expect("write spec");
    std::fs::write(
        project.path().join("berth.yaml"),
        format!("engine: {{name: {engine}}}\nregistry: {registry}\nimages:\n  big: big.yaml\ntasks:\n  fill: big\n"),
    )
    .expect("write berth.yaml");
    project
}

/// Builds `project` on a filled engine storage, then after `make_room`: the first build fails naming
/// `storage` and leaves nothing behind that a later run would trust, the second works. Returns the built
/// image's reference.
fn fails_when_full_then_works(
    project: &Path,
    vars: &[(&str, &Path)],
    storage: &str,
    make_room: impl FnOnce(),
) -> String {
    fails_when_full_then_works_by(
        project,
        |args| berth(project, args, vars),
        storage,
        make_room,
    )
}

/// [`fails_when_full_then_works`] with berth run by `berth` (in `project`, given its arguments).
fn fails_when_full_then_works_by(
    project: &Path,
    berth: impl Fn(&[&str]) -> Output,
    storage: &str,
    make_room: impl FnOnce(),
) -> String {
    let build = ["build", "--network", "none"];
    let failed = berth(&build);
    // a full engine storage fails the build as an error (exit 6), not as a step's failure
    assert_out_of_space(&failed, storage);
    let said = text(&failed);
    assert!(
        said.contains("dd if=/dev/zero"),
        "what filled it is the RUN step, not the base: {said}"
    );
    assert!(
        !project.join("berth.lock").exists(),
        "no lock for a failed build"
    );
    let exists = berth(&["exists"]);
    assert_eq!(
        exists.status.code(),
        Some(1),
        "the registry holds nothing of the failed build: {}",
        text(&exists)
    );
    make_room();
    let worked = berth(&build);
    assert!(worked.status.success(), "{}", text(&worked));
    assert!(project.join("berth.lock").exists(), "{}", text(&worked));
    let exists = berth(&["exists"]);
    assert!(exists.status.success(), "{}", text(&exists));
    let stdout = String::from_utf8_lossy(&worked.stdout);
    stdout.lines().last().expect("the built image").to_string()
}

/// Fills `disk` but for [`ROOM`], then [`fails_when_full_then_works`], removing the filler as the room made.
fn filled_then_emptied(
    project: &Path,
    vars: &[(&str, &Path)],
    storage: &str,
    disk: &SmallTmpfs,
) -> String {
    let filler = disk.fill_leaving(ROOM);
    fails_when_full_then_works(project, vars, storage, || {
        std::fs::remove_file(&filler).expect("make room");
    })
}

/// Asserts that `image` holds the whole file the RUN step wrote, run through `cli` (the docker or podman CLI
/// on the test's daemon): nothing of the failed step was reused.
fn assert_holds_big_file(image: &str, cli: impl Fn(&[&str]) -> Output) {
    // by its local tag: by digest the engine would pull
    let tagged = image.split('@').next().unwrap_or(image);
    let size = cli(&[
        "run",
        "--rm",
        "--network",
        "none",
        tagged,
        "stat",
        "-c",
        "%s",
        "/big",
    ]);
    assert_eq!(
        String::from_utf8_lossy(&size.stdout).trim(),
        BIG_FILE.to_string(),
        "{}",
        text(&size)
    );
}

#[test]
fn a_docker_build_that_fills_dockers_storage_says_so_keeps_nothing_and_the_next_one_works() {
    let Some(env) = TestEnv::for_engine("docker") else {
        return;
    };
    // room for the base, the file, and the push's export of the image (dockerd spools it under its data root)
    let daemon = SmallDockerd::start("1200m", &env.containerd_address);
    let config = docker_config(env);
    // the base and helper images first, so what fills the disk is the work under test
    fixtures_into_docker(env, &daemon, config.path());
    let project = storage_project(env, "docker");
    let host = PathBuf::from(daemon.host());
    let vars = [
        ("DOCKER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let root = daemon.data_root().display().to_string();
    let storage = format!("DockerRootDir {root}");
    let image = filled_then_emptied(project.path(), &vars, &storage, &daemon.storage);
    assert_holds_big_file(&image, |args| daemon.docker(args));
    drop(daemon);
    // a second dockerd must leave the machine's own one whole (`--bridge=none` deleted its docker0)
    assert!(
        std::path::Path::new("/sys/class/net/docker0").exists(),
        "the test's dockerd removed the machine's docker0 bridge"
    );
}

#[test]
fn a_podman_build_that_fills_podmans_storage_says_so_keeps_nothing_and_the_next_one_works() {
    let Some(env) = TestEnv::for_engine("podman") else {
        return;
    };
    let service = SmallPodman::start("640m");
    let config = docker_config(env);
    // the base and helper images first, so what fills the disk is the work under test
    fixtures_into_podman(env, &service, config.path());
    let project = storage_project(env, "podman");
    let host = PathBuf::from(service.host());
    let vars = [
        ("CONTAINER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let root = service.graph_root().display().to_string();
    let storage = format!("GraphRoot {root}");
    let image = filled_then_emptied(project.path(), &vars, &storage, &service.storage);
    assert_holds_big_file(&image, |args| service.podman(args));
}

/// Rootless: the service is the rootless test user's own (not the shared one of `scripts/env/up.sh`), its
/// store on a tmpfs the user owns, and berth runs as that user, as a rootless user's berth does.
#[test]
fn a_rootless_podman_build_that_fills_the_users_storage_says_so_keeps_nothing_and_the_next_one_works(
) {
    let Some(env) = TestEnv::for_engine("podman") else {
        return;
    };
    let user = rootless_user();
    let service = SmallPodman::start_as(user, "640m", None);
    let config = docker_config(env);
    let project = storage_project(env, "podman");
    give_to(user, &[config.path(), project.path()]);
    // the base and helper images first, so what fills the disk is the work under test
    fixtures_into_podman(env, &service, config.path());
    let host = PathBuf::from(service.host());
    let vars = [
        ("CONTAINER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let as_user = |args: &[&str]| berth_as(Some(user), project.path(), args, &vars);
    let root = service.graph_root().display().to_string();
    // named as the user's store (the rootful service's name and hint would send the user to /etc)
    let storage = format!("rootless Podman's storage (GraphRoot {root})");
    let filler = service.storage.fill_leaving(ROOM);
    let image = fails_when_full_then_works_by(project.path(), as_user, &storage, || {
        std::fs::remove_file(&filler).expect("make room");
    });
    assert_holds_big_file(&image, |args| service.podman(args));
}

#[test]
fn a_containerd_build_that_fills_containerds_root_says_so_keeps_nothing_and_the_next_one_works() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let daemon = SmallContainerd::start("640m");
    let config = docker_config(env);
    let project = storage_project(env, "containerd");
    let address = daemon.address();
    let state = tempfile::tempdir().expect("temp dir");
    let vars = [
        ("CONTAINERD_ADDRESS", address.as_path()),
        ("DOCKER_CONFIG", config.path()),
        ("BERTH_CONTAINERD_STATE_DIR", state.path()),
    ];
    // the base and helper images first, so what fills the disk is the RUN step
    let user = format!("{}:{}", env.registry_user, env.registry_password().expose());
    for image in [&env.python_image, &env.uv_image] {
        let pull = [
            "--namespace",
            "default",
            "images",
            "pull",
            "--plain-http",
            "--user",
            &user,
            image,
        ];
        let pulled = daemon.ctr(&pull);
        assert!(pulled.status.success(), "{}", text(&pulled));
    }
    let root = daemon.root().display().to_string();
    let image = filled_then_emptied(project.path(), &vars, &root, &daemon.storage);
    let leases = daemon.ctr(&["--namespace", "default", "leases", "ls", "--quiet"]);
    assert_eq!(
        String::from_utf8_lossy(&leases.stdout).trim(),
        "",
        "no lease of the builds is left"
    );
    // the image is the engine's, under the name berth printed
    let tagged = image.split('@').next().unwrap_or(&image);
    let listed = daemon.ctr(&["--namespace", "default", "images", "ls"]);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.contains(tagged), "{listed}");
}

#[test]
fn an_lxd_build_that_fills_its_storage_pool_says_so_keeps_nothing_and_the_next_one_works() {
    let Some(env) = TestEnv::for_engine("lxd") else {
        return;
    };
    // every build unpacks the base into the pool (the `dir` driver keeps no image volume), so the pool is
    // sized to hold the base and not the file, then grown
    let pool = SmallLxdPool::create("240m");
    let config = docker_config(env);
    let project = storage_project(env, "lxd");
    let name = PathBuf::from(&pool.name);
    let vars = [
        ("BERTH_LXD_POOL", name.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let storage = format!(
        "the LXD storage pool {} (source {})",
        pool.name,
        pool.source().display()
    );
    fails_when_full_then_works(project.path(), &vars, &storage, || {
        pool.storage.grow("640m")
    });
}
