//! Build behaviours: config that lands in the image, cache reuse, context files, failing steps, missing bases.
//!
//! What a RUN step sees (variables, working directory, user, copied files and their modes) is checked inside the
//! build by [`checks`]: a false condition fails the build, with the condition in the error. What only the image
//! config can show (env, entrypoint, workdir, user, layers) is checked with `inspect`.

use std::os::unix::fs::PermissionsExt;

use berth_core::engine::{BuildOptions, ContainerEngine, NoProgress};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Step};
use berth_core::ErrorKind;

use super::support::{
    build_ok, build_options, checks, expect_kind, image_ref, inspect_ok, plan, run, unique,
    Cleanup, Recorder,
};
use crate::env::TestEnv;

/// Behaviour 1: A plan with ENV (one value referring to another), WORKDIR, USER, RUN, LABEL and ENTRYPOINT builds; RUN steps
/// see the variables, the working directory and the user; `inspect` shows env, entrypoint, workdir and user, the
/// tag and the id `build` returned.
pub async fn build_applies_config(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let tag = image_ref(env, "config", "v1");
    let entrypoint = vec![
        "/bin/sh".to_string(),
        "-c".to_string(),
        "echo conformance".to_string(),
    ];
    let plan = plan(
        &env.busybox_image,
        vec![
            Step::Env(vec![("BERTH_A".into(), "alpha".into())]),
            Step::Env(vec![
                ("BERTH_B".into(), "$BERTH_A-beta".into()),
                ("BERTH_SPACED".into(), "two words".into()),
            ]),
            Step::Workdir("/srv/berth-app".into()),
            Step::User("nobody".into()),
            run(checks(&["test \"$(id -u)\" = 65534"])),
            Step::User("root".into()),
            run(checks(&[
                "test \"$(id -u)\" = 0",
                "test \"$BERTH_B\" = alpha-beta",
                "test \"$BERTH_SPACED\" = \"two words\"",
                "test \"$(pwd)\" = /srv/berth-app",
                "echo made > made-by-run",
            ])),
            run(checks(&[
                "test \"$(cat /srv/berth-app/made-by-run)\" = made",
            ])),
            Step::Label(vec![("org.berth.conformance".into(), unique("label"))]),
            Step::Entrypoint(entrypoint.clone()),
        ],
    );
    let built = build_ok(engine, &mut cleanup, &plan, &build_options(env, &tag)).await;
    assert!(
        built.id.starts_with("sha256:"),
        "build returned id {:?}, not sha256:...",
        built.id
    );

    let image = inspect_ok(engine, &tag).await;
    assert_eq!(image.id, built.id, "inspect's id differs from build's");
    assert!(
        image.tags.contains(&tag),
        "inspect {tag}: tags {:?} lack it",
        image.tags
    );
    for expected in [
        "BERTH_A=alpha",
        "BERTH_B=alpha-beta",
        "BERTH_SPACED=two words",
    ] {
        assert!(
            image.env.iter().any(|e| e == expected),
            "env lacks {expected}: {:?}",
            image.env
        );
    }
    assert!(
        image.env.iter().any(|e| e.starts_with("PATH=")),
        "env lost the base image's PATH: {:?}",
        image.env
    );
    assert_eq!(image.entrypoint, entrypoint, "entrypoint");
    assert_eq!(image.workdir, "/srv/berth-app", "workdir");
    assert_eq!(image.user, "root", "user");
    assert!(
        !image.layers.is_empty() && image.layers.iter().all(|l| l.starts_with("sha256:")),
        "layers should be sha256 diff ids: {:?}",
        image.layers
    );
}

/// Behaviour 2: A second build of an identical plan reuses the cache, and `no_cache` does not.
///
/// The evidence every engine can show through the trait: a RUN step writes a fresh random value
/// (`/proc/sys/kernel/random/uuid` and the time in nanoseconds) into a file. Re-running it would give that layer
/// different content, hence a different diff id, so identical `inspect().layers` prove the step's layer was reused.
/// A third build with `no_cache` must give different layers, which also proves the value really changes per run.
/// Image ids are not compared: an engine may write a new config (e.g. a creation time) around cached layers.
pub async fn rebuild_reuses_cache(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let plan = plan(
        &env.busybox_image,
        vec![
            // unique per run, so the first build really runs the step
            Step::Env(vec![("BERTH_RUN".into(), unique("cache"))]),
            run("cat /proc/sys/kernel/random/uuid > /nonce && date +%s%N >> /nonce"),
        ],
    );
    let first_tag = image_ref(env, "cache", "first");
    let second_tag = image_ref(env, "cache", "second");
    let fresh_tag = image_ref(env, "cache", "no-cache");
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &first_tag)).await;
    build_ok(
        engine,
        &mut cleanup,
        &plan,
        &build_options(env, &second_tag),
    )
    .await;
    let fresh = BuildOptions {
        no_cache: true,
        ..build_options(env, &fresh_tag)
    };
    build_ok(engine, &mut cleanup, &plan, &fresh).await;

    let first = inspect_ok(engine, &first_tag).await;
    let second = inspect_ok(engine, &second_tag).await;
    let uncached = inspect_ok(engine, &fresh_tag).await;
    assert_eq!(
        second.layers, first.layers,
        "the second identical build re-ran its RUN step (its random layer changed) instead of using the cache"
    );
    assert_ne!(
        uncached.layers.last(),
        first.layers.last(),
        "a build with no_cache produced the same random layer: no_cache was ignored"
    );
}

/// Behaviour 3: Context files land where `Step::Copy` puts them: files from disk (`ContextSource::File`, keeping the
/// executable bit) and generated bytes (`ContextSource::Bytes`), a folder copied by its name, a single file, and
/// `chown`. A RUN step checks contents, modes and owners inside the build; `inspect` shows the ENV the checks used.
pub async fn context_files_and_env_land(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let token = unique("ctx");
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path().join("data.txt");
    std::fs::write(&data, format!("from-file-{token}\n")).expect("write data.txt");
    let script = dir.path().join("script.sh");
    std::fs::write(&script, "#!/bin/sh\necho \"script-ran-$BERTH_TOKEN\"\n").expect("write script");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let mut plan = plan(
        &env.busybox_image,
        vec![
            Step::Env(vec![("BERTH_TOKEN".into(), token.clone())]),
            Step::Copy(CopyStep {
                sources: vec!["tree".into()],
                destination: "/opt/ctx/".into(),
                chown: None,
            }),
            Step::Copy(CopyStep {
                sources: vec!["single.txt".into()],
                destination: "/opt/single/".into(),
                chown: Some("65534:65534".into()),
            }),
            run(checks(&[
                "grep -qx \"from-file-$BERTH_TOKEN\" /opt/ctx/data.txt",
                "grep -qx \"from-bytes-$BERTH_TOKEN\" /opt/ctx/nested/deeper/gen.txt",
                "test -x /opt/ctx/bin/script.sh",
                "test \"$(/opt/ctx/bin/script.sh)\" = \"script-ran-$BERTH_TOKEN\"",
                "test ! -x /opt/ctx/data.txt",
                "grep -qx \"single-$BERTH_TOKEN\" /opt/single/single.txt",
                "test \"$(stat -c %u:%g /opt/single/single.txt)\" = 65534:65534",
                "test \"$(stat -c %u /opt/ctx/data.txt)\" = 0",
                "test ! -e /opt/ctx/tree",
            ])),
        ],
    );
    plan.context = vec![
        ContextEntry {
            path: "tree/data.txt".into(),
            source: ContextSource::File(data),
        },
        ContextEntry {
            path: "tree/bin/script.sh".into(),
            source: ContextSource::File(script),
        },
        ContextEntry {
            path: "tree/nested/deeper/gen.txt".into(),
            source: ContextSource::Bytes(format!("from-bytes-{token}\n").into_bytes()),
        },
        ContextEntry {
            path: "single.txt".into(),
            source: ContextSource::Bytes(format!("single-{token}").into_bytes()),
        },
    ];
    let tag = image_ref(env, "context", "v1");
    build_ok(engine, &mut cleanup, &plan, &build_options(env, &tag)).await;
    let image = inspect_ok(engine, &tag).await;
    let expected = format!("BERTH_TOKEN={token}");
    assert!(
        image.env.contains(&expected),
        "env lacks {expected}: {:?}",
        image.env
    );
}

/// Behaviour 4: A failing RUN step fails the build with [`ErrorKind::BuildFailed`], the error carries the step's output
/// (`marker-xyz`, which only the running shell prints: the command text spells it `marker-"xyz"`), and no image
/// is tagged.
pub async fn failing_run_is_build_failed(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let tag = image_ref(env, "failing", "v1");
    let plan = plan(
        &env.busybox_image,
        vec![
            run("echo before-the-failure"),
            run("echo marker-\"xyz\" >&2; exit 3"),
            run("echo never-reached > /never"),
        ],
    );
    let options = build_options(env, &tag);
    cleanup.image(&tag);
    let progress = Recorder::default();
    let err = expect_kind(
        engine.build(&plan, &options, &progress).await,
        ErrorKind::BuildFailed,
        "build with a RUN step that exits 3",
    );
    assert!(
        err.to_string().contains("marker-xyz"),
        "the error does not carry the failing step's output (marker-xyz): {err}\n  progress lines: {:?}",
        progress.lines()
    );
    expect_kind(
        engine.inspect(&tag).await,
        ErrorKind::NotFound,
        "inspect of the tag a failed build would have set",
    );
}

/// Behaviour 9b: A build whose base image does not exist fails with [`ErrorKind::NotFound`] (preferred: the caller can tell
/// "fix the reference" from "fix the step") or [`ErrorKind::BuildFailed`], and the message names the base.
pub async fn build_from_missing_base_fails(engine: &dyn ContainerEngine, env: &TestEnv) {
    let mut cleanup = Cleanup::new(engine, env);
    let missing = image_ref(env, "missing-base", "none");
    let tag = image_ref(env, "from-missing", "v1");
    let plan = plan(&missing, vec![run("true")]);
    cleanup.image(&tag);
    let result = engine
        .build(&plan, &build_options(env, &tag), &NoProgress)
        .await;
    let err = match result {
        Ok(built) => panic!("a build from the missing base {missing} succeeded: {built:?}"),
        Err(e) => e,
    };
    assert!(
        matches!(err.kind(), ErrorKind::NotFound | ErrorKind::BuildFailed),
        "build from a missing base: expected NotFound or BuildFailed, got {:?}: {err}",
        err.kind()
    );
    let repository = missing
        .split_once('/')
        .and_then(|(_, rest)| rest.rsplit_once(':'))
        .map(|(repo, _)| repo)
        .unwrap_or(&missing);
    assert!(
        err.to_string().contains(repository),
        "the error does not name the missing base {missing}: {err}"
    );
    eprintln!(
        "{}: a missing base image is {:?}",
        engine.name(),
        err.kind()
    );
}
