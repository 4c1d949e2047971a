//! What RUN steps change reaches the pushed image: the registry's layers, applied in order by the suite itself
//! (so neither the engine's local snapshots nor its own unpacking can hide a wrong layer), give the expected
//! `/srv`.

use berth_core::plan::Step;

use super::registry::{apply_layers, download, Applied};
use super::support::{build_and_push, image_ref, plan, run, unique, Cleanup};
use super::ContainerEngine;
use crate::env::TestEnv;

/// Builds `steps` on busybox, pushes the image, and compares the `/srv` its pushed layers give with `expected`.
async fn pushed_srv_is(
    engine: &dyn ContainerEngine,
    env: &TestEnv,
    label: &str,
    steps: Vec<Step>,
    expected: &[(&str, Applied)],
) {
    let mut cleanup = Cleanup::new(engine, env);
    let reference = image_ref(env, label, "v1");
    let plan = plan(&env.busybox_image, steps);
    build_and_push(engine, &mut cleanup, env, &plan, &reference).await;
    let tree = apply_layers(&download(env, &reference));
    let srv: Vec<(&str, &Applied)> = tree
        .iter()
        .filter(|(p, _)| p.starts_with("srv/"))
        .map(|(p, a)| (p.as_str(), a))
        .collect();
    let expected: Vec<(&str, &Applied)> = expected.iter().map(|(p, a)| (*p, a)).collect();
    assert_eq!(
        srv, expected,
        "the pushed layers of {reference}, applied in order, give the wrong /srv"
    );
}

/// Behaviour 17: What RUN steps delete, replace and link reaches the pushed image: a deleted file is gone, a folder
/// removed and made again holds only its new contents, a hard link shares its file's contents, a symlink keeps its
/// target and a setuid bit survives.
pub async fn run_layers_carry_deletions(engine: &dyn ContainerEngine, env: &TestEnv) {
    let token = unique("layers");
    let steps = vec![
        run(format!(
            "mkdir -p /srv/keep /srv/tree/sub && echo {token} > /srv/keep/a && echo b > /srv/tree/sub/b \
             && echo gone > /srv/gone && echo x > /srv/x"
        )),
        run("rm /srv/gone && rm -rf /srv/tree && mkdir /srv/tree && echo c > /srv/tree/c \
             && chmod 4755 /srv/x && ln /srv/keep/a /srv/keep/a-link && ln -s keep/a /srv/a-sym \
             && echo more >> /srv/keep/a"),
    ];
    let a = format!("{token}\nmore\n").into_bytes();
    let expected = [
        ("srv/a-sym", Applied::Symlink("keep/a".into())),
        ("srv/keep", Applied::Dir),
        ("srv/keep/a", Applied::File(a.clone(), 0o644)),
        ("srv/keep/a-link", Applied::File(a, 0o644)),
        ("srv/tree", Applied::Dir),
        ("srv/tree/c", Applied::File(b"c\n".to_vec(), 0o644)),
        ("srv/x", Applied::File(b"x\n".to_vec(), 0o4755)),
    ];
    pushed_srv_is(engine, env, "deletions", steps, &expected).await;
}

/// Behaviour 20: Renaming a folder a previous step made and changing only the mode of a file it made reach the
/// pushed image whole: the renamed folder keeps its contents and the file its data. (On overlay with `redirect_dir`
/// or `metacopy` the step's upper folder holds only a pointer to the lower layer for both; an engine that wrote
/// that folder as the layer would push an empty folder and an empty file.)
pub async fn run_layers_carry_renames_and_mode_changes(
    engine: &dyn ContainerEngine,
    env: &TestEnv,
) {
    let token = unique("renames");
    let steps = vec![
        run(format!(
            "mkdir -p /srv/tree/sub && echo {token} > /srv/tree/sub/file && echo base-{token} > /srv/base \
             && chmod 644 /srv/base"
        )),
        run("mv /srv/tree /srv/renamed && chmod 600 /srv/base"),
    ];
    let expected = [
        (
            "srv/base",
            Applied::File(format!("base-{token}\n").into_bytes(), 0o600),
        ),
        ("srv/renamed", Applied::Dir),
        ("srv/renamed/sub", Applied::Dir),
        (
            "srv/renamed/sub/file",
            Applied::File(format!("{token}\n").into_bytes(), 0o644),
        ),
    ];
    pushed_srv_is(engine, env, "renames", steps, &expected).await;
}
