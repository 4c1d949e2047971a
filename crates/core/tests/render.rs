//! Snapshots of rendered Dockerfiles: a change to generated output is a visible diff in review.

use std::path::Path;

use berth_core::plan::plan;
use berth_core::render::dockerfile;
use berth_core::spec::load_spec;
use berth_core::tag::Namer;

fn render(files: &[(&str, &str)]) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    for (name, text) in files {
        let path = dir.path().join(name);
        std::fs::create_dir_all(path.parent().unwrap_or(Path::new("/"))).expect("mkdir");
        std::fs::write(path, text).expect("write");
    }
    let spec = load_spec(&dir.path().join("spec.yaml")).expect("spec loads");
    dockerfile(&plan(&Namer::new(None), &spec).expect("plan"))
}

#[test]
fn minimal_spec_uses_micromamba_and_flytekit() {
    insta::assert_snapshot!(render(&[("spec.yaml", "name: minimal\n")]));
}

#[test]
fn python_exec_spec_with_everything() {
    insta::assert_snapshot!(render(&[
        (
            "spec.yaml",
            r#"name: full
registry: 127.0.0.1:5000/team
base_image: 127.0.0.1:5000/fixtures/bookworm-python:1
python_exec: /usr/bin/python3
packages: ["six==1.16.0", "requests>=2"]
apt_packages: [git, curl]
pip_index: https://pypi.org/simple
pip_extra_index_url: [https://example.org/simple]
pip_extra_args: --no-build-isolation
pip_secret_mounts: [[token.txt, /run/secrets/pip-token]]
env: {GREETING: "say \"hi\"", PYTHONPATH: /app, N: 3}
commands: ["echo built > /root/built.txt", "python -c 'import six'"]
entrypoint: [python, -m, app]
copy: [app.py, conf]
builder_config: {uv_image: "127.0.0.1:5000/fixtures/uv:0.5.1"}
"#,
        ),
        ("token.txt", "secret"),
        ("app.py", "print('hi')\n"),
        ("conf/a.toml", "a = 1\n"),
    ]));
}

#[test]
fn conda_spec_installs_through_micromamba() {
    insta::assert_snapshot!(render(&[(
        "spec.yaml",
        "name: conda\npython_version: \"3.11\"\nconda_channels: [bioconda]\nconda_packages: [\"samtools>=1.17\", pandas]\n",
    )]));
}

#[test]
fn uv_lock_spec_syncs_the_project() {
    insta::assert_snapshot!(render(&[
        (
            "spec.yaml",
            "name: locked\npython_exec: /usr/bin/python3\nrequirements: uv.lock\n"
        ),
        ("uv.lock", "version = 1\n"),
        ("pyproject.toml", "[project]\nname = \"x\"\n"),
    ]));
}

#[test]
fn poetry_lock_spec_installs_poetry() {
    insta::assert_snapshot!(render(&[
        (
            "spec.yaml",
            "name: poetry\npython_exec: /usr/bin/python3\nrequirements: poetry.lock\n"
        ),
        ("poetry.lock", "# lock\n"),
        ("pyproject.toml", "[tool.poetry]\nname = \"x\"\n"),
    ]));
}

#[test]
fn source_root_is_copied_to_root() {
    insta::assert_snapshot!(render(&[
        (
            "spec.yaml",
            "name: src\npython_exec: python3\nsource_root: src\nsource_copy_mode: 2\n"
        ),
        ("src/pkg/mod.py", "x = 1\n"),
    ]));
}

#[test]
fn cache_mount_modes_change_only_the_cache_mounts() {
    use berth_core::render::{dockerfile_with, CacheMounts, RenderOptions};
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("spec.yaml");
    std::fs::write(
        &path,
        "name: s\nbase_image: b:1\npython_exec: /usr/bin/python3\npackages: [six]\napt_packages: [jq]\n",
    )
    .expect("write");
    let spec = load_spec(&path).expect("spec loads");
    let plan = plan(&Namer::new(None), &spec).expect("plan");
    let locked = dockerfile(&plan);
    let render = |cache_mounts| dockerfile_with(&plan, &RenderOptions { cache_mounts });
    let shared = render(CacheMounts::SharedWithLock {
        id_suffix: "1001".into(),
    });
    assert_eq!(locked.matches("sharing=locked").count(), 2, "{locked}");
    assert!(!shared.contains("sharing=locked"), "{shared}");
    // ids differ per user, and each step locks the caches it mounts before its command
    assert!(
        shared.contains("target=/var/cache/apt,id=apt-1001 \\\n    exec 9>/var/cache/apt/.berth-lock; command -v flock >/dev/null && flock 9; \\\n    apt-get update"),
        "{shared}"
    );
    assert!(shared.contains("id=uv-1001"), "{shared}");
    assert_eq!(shared.matches("flock 9;").count(), 2, "{shared}");
    let unlocked: String = shared
        .replace(
            "exec 9>/var/cache/apt/.berth-lock; command -v flock >/dev/null && flock 9; \\\n    ",
            "",
        )
        .replace(
            "exec 9>/root/.cache/uv/.berth-lock; command -v flock >/dev/null && flock 9; \\\n    ",
            "",
        )
        .replace("-1001", "");
    assert_eq!(unlocked, locked.replace("sharing=locked", "sharing=shared"));
    let tmpfs = render(CacheMounts::Tmpfs);
    assert!(
        tmpfs.contains("--mount=type=tmpfs,target=/var/cache/apt \\\n    apt-get update"),
        "{tmpfs}"
    );
    assert!(!tmpfs.contains("type=cache"), "{tmpfs}");
}
