//! berth's own folders full: the digest cache (`BERTH_CACHE_DIR`) and the containerd builder's state folder
//! (`BERTH_CONTAINERD_STATE_DIR`) on a small tmpfs filled to the last byte. Naming still works (the cache is only a
//! cache, and never trusts a half-written entry); a containerd build fails saying "no space left" and naming the
//! folder; the next run with space succeeds. (Needs root, as the suite does: it mounts the tmpfs.)

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_tests::conformance::support::unique;
use berth_tests::env::TestEnv;

/// A tmpfs of 256 KiB, full, unmounted when dropped.
struct FullDisk {
    dir: tempfile::TempDir,
}

impl FullDisk {
    fn new() -> FullDisk {
        let dir = tempfile::tempdir().expect("temp dir");
        let mounted = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=256k", "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("run mount");
        assert!(mounted.success(), "mount a tmpfs (the suite runs as root)");
        // fill it: dd stops with ENOSPC
        let _ = Command::new("dd")
            .arg("if=/dev/zero")
            .arg(format!("of={}/filler", dir.path().display()))
            .arg("bs=4k")
            .output();
        FullDisk { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for FullDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.dir.path()).status();
    }
}

fn berth(dir: &Path, args: &[&str], vars: &[(&str, &Path)]) -> Output {
    let mut command = Command::new(berth_tests::berth_bin());
    command.args(args).current_dir(dir);
    for (name, value) in vars {
        command.env(name, value);
    }
    command.output().expect("run berth")
}

fn text(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
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
    let full = FullDisk::new();
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
    let config = tempfile::tempdir().expect("temp dir");
    let auth = base64(&format!(
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
    let full = FullDisk::new();
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

fn base64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
