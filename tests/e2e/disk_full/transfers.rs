//! Pushes and pulls: an image built with room, then pushed while the place the push writes to is full, and a
//! build whose base pull fills the engine's storage. A push that needs room fails saying "no space left" and
//! naming that place (Podman's temporary folder, where the service copies what it pushes or exports, and
//! writes a little for every inspect: the rootful service's, and a rootless user's with berth run as that
//! user; Docker's data root, where dockerd writes the export berth's `--push-via export` reads), the registry
//! holds no tag of it, and once there is room the same push works, berth's own TMPDIR and cache folder being
//! full changing nothing (berth's push spools nothing: it reads the store or streams the export). berth's push
//! from the engine's store, dockerd's own push and containerd's push write nothing to disk and work on a full
//! one. A pull into a full containerd root fails naming the root and keeps no image record; the next build
//! pulls the base whole.

use std::path::{Path, PathBuf};
use std::process::Output;

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;
use berth_tests::project::rootless_user;
use berth_tests::small_storage::{SmallContainerd, SmallDockerd, SmallPodman, SmallTmpfs};
use berth_tests::users::SystemUser;

use crate::{
    assert_out_of_space, berth_as, docker_config, fixtures_into_docker, fixtures_into_podman,
    give_to, text,
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

/// berth on a push project: the project folder, the engine, its variables, and the user berth runs as (`None`:
/// root; a rootless user's berth runs as that user).
struct Pusher<'a> {
    project: &'a Path,
    engine: &'a str,
    vars: &'a [(&'a str, &'a Path)],
    user: Option<&'static SystemUser>,
}

impl Pusher<'_> {
    /// Runs berth with `args`, and `extra` beside the variables.
    fn berth(&self, args: &[&str], extra: &[(&str, &Path)]) -> Output {
        let mut vars = self.vars.to_vec();
        vars.extend_from_slice(extra);
        berth_as(self.user, self.project, args, &vars)
    }

    /// `berth build --no-push` of [`push_project`], which must work (there is room).
    fn build_locally(&self) {
        let args = [
            "build",
            "--engine",
            self.engine,
            "--no-push",
            "--network",
            "none",
            "spec.yaml",
        ];
        let built = self.berth(&args, &[]);
        assert!(built.status.success(), "{}", text(&built));
    }

    /// `berth push` with `--push-via via`: berth's client from the engine's store ("berth", on this machine)
    /// or its export ("export"), or the engine's own push ("engine").
    fn push(&self, via: &str, extra: &[(&str, &Path)]) -> Output {
        let args = [
            "push",
            "--engine",
            self.engine,
            "--push-via",
            via,
            "spec.yaml",
        ];
        self.berth(&args, extra)
    }

    /// Asserts that the registry holds no tag of the project (exit 1 of `berth exists`), or holds it.
    fn assert_in_registry(&self, expected: bool) {
        let exists = self.berth(&["exists", "spec.yaml"], &[]);
        let code = if expected { 0 } else { 1 };
        assert_eq!(exists.status.code(), Some(code), "{}", text(&exists));
    }

    /// The pushes by `vias` fail naming `place` and leave no tag in the registry.
    fn pushes_fail(&self, vias: &[&str], place: &str) {
        for via in vias {
            let failed = self.push(via, &[]);
            assert_out_of_space(&failed, place);
            self.assert_in_registry(false);
        }
    }

    /// The pushes by `vias` work, berth's with its own TMPDIR and cache folder full, and the registry has the
    /// tag.
    fn pushes_work(&self, vias: &[&str]) {
        let full = SmallTmpfs::new("256k");
        full.fill_leaving(0);
        let own = [("TMPDIR", full.path()), ("BERTH_CACHE_DIR", full.path())];
        for via in vias {
            let pushed = self.push(via, &own);
            assert!(pushed.status.success(), "{}", text(&pushed));
            self.assert_in_registry(true);
        }
    }
}

/// Every way berth pushes through Podman.
const VIAS: [&str; 3] = ["berth", "export", "engine"];

/// Pushes through a Podman service of the test's own whose TMPDIR is a tmpfs of its own, rootful or
/// (`rootless`) run as the rootless test user (berth then runs as that user too, and the folder is named as the
/// user's, with the user's way to move it: the TMPDIR of the user's service, `image_copy_tmp_dir` in the user's
/// containers.conf), of an image built with room: every push fails naming the folder when it is full to the
/// last byte (Podman 4.3's inspect crashes instead of saying so, and every push inspects first); with 8 MiB
/// left the export and the service's own push still fail, and berth's push from the store works (rootful) or
/// falls back to the export and fails as that does (rootless: berth, run as the user, cannot read every file of
/// the image's layers in the user's store; measured: the base's `/root/.bashrc`, Permission denied); with room
/// they all work.
fn podman_pushes_with_a_full_temporary_folder(rootless: bool) {
    let engine = if rootless {
        "podman_rootless"
    } else {
        "podman"
    };
    let Some(env) = TestEnv::for_engine(engine) else {
        return;
    };
    let user = rootless.then(rootless_user);
    let service = match user {
        Some(user) => SmallPodman::start_as(user, "700m", Some("600m")),
        None => SmallPodman::start_with_tmp("700m", Some("600m")),
    };
    let config = docker_config(env);
    let project = push_project(env);
    if let Some(user) = user {
        give_to(user, &[config.path(), project.path()]);
    }
    // the base and helper images first, so what fills the disk is the work under test
    fixtures_into_podman(env, &service, config.path());
    let host = PathBuf::from(service.host());
    let vars = [
        ("CONTAINER_HOST", host.as_path()),
        ("DOCKER_CONFIG", config.path()),
    ];
    let tmp = service.tmp.as_ref().expect("a TMPDIR of its own");
    let place = format!(
        "{}Podman's temporary folder (imageCopyTmpDir {})",
        if user.is_some() { "rootless " } else { "" },
        tmp.path().display()
    );
    let pusher = Pusher {
        project: project.path(),
        engine: "podman",
        vars: &vars,
        user,
    };
    pusher.build_locally();
    let filler = tmp.fill_leaving(0);
    pusher.pushes_fail(&VIAS, &place);
    // room to inspect the image, not to copy it: berth's push from the store needs no more
    std::fs::remove_file(&filler).expect("make room");
    let filler = tmp.fill_leaving(8 << 20);
    let needs_room: &[&str] = match user {
        None => &["export", "engine"],
        Some(_) => &VIAS,
    };
    pusher.pushes_fail(needs_room, &place);
    std::fs::remove_file(&filler).expect("make room");
    if user.is_none() {
        // (the failed pushes leave Podman's partial files behind: 8 MiB again beside them)
        let filler = tmp.fill_leaving(8 << 20);
        pusher.pushes_work(&["berth"]);
        std::fs::remove_file(&filler).expect("make room");
    }
    pusher.pushes_work(needs_room);
}

#[test]
fn a_podman_push_with_a_full_temporary_folder_says_so_keeps_no_tag_and_works_with_room() {
    podman_pushes_with_a_full_temporary_folder(false);
}

#[test]
fn a_rootless_podman_push_with_a_full_temporary_folder_says_so_keeps_no_tag_and_works_with_room() {
    podman_pushes_with_a_full_temporary_folder(true);
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
    let pusher = Pusher {
        project: project.path(),
        engine: "docker",
        vars: &vars,
        user: None,
    };
    pusher.build_locally();
    let place = format!(
        "Docker's storage (DockerRootDir {})",
        daemon.data_root().display()
    );
    let filler = daemon.storage.fill_leaving(1 << 20);
    // berth's push from the export reads `docker save`, which dockerd writes under its data root first
    pusher.pushes_fail(&["export"], &place);
    // berth's push from the store reads it where it is, dockerd's own push streams each layer: no room needed
    pusher.pushes_work(&["berth", "engine"]);
    std::fs::remove_file(&filler).expect("make room");
    pusher.pushes_work(&["export"]);
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
    let pusher = Pusher {
        project: project.path(),
        engine: "containerd",
        vars: &vars,
        user: None,
    };
    let failed = pusher.berth(&args, &[]);
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
    pusher.build_locally();
    // a push reads the content store and writes nothing: it works on a full root
    let filler = daemon.storage.fill_leaving(0);
    pusher.pushes_work(&["berth"]);
    drop(filler);
}
