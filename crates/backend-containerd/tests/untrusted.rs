//! What berth does not control: base and helper images that point into the host, steps that try to leave their
//! namespaces, and context files that change while berth reads them.
//!
//! The hostile images are the busybox fixture plus a layer whose `/etc`, `/root`, a folder's entry and a relative
//! `../..` chain are links to a host folder holding a user database and a secret. berth reads and writes a
//! snapshot from the host, as root; every such path must resolve inside the image, on the overlayfs and the native
//! snapshotter alike (with native, the snapshot is one host folder written in place).

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_core::engine::{ContainerEngine, NoProgress, RemoveOptions};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, HelperImage, Mount, RunStep, Step};
use berth_core::ErrorKind;
use berth_tests::conformance::layered::{push_with_layer, Entry};
use berth_tests::conformance::registry;
use berth_tests::conformance::support::{build_options, plan, unique};
use berth_tests::env::TestEnv;

/// What the host folder holds, and the image that links to it.
struct Hostile {
    host: tempfile::TempDir,
    image: String,
}

impl Hostile {
    fn push(env: &TestEnv, snapshotter: &str) -> Hostile {
        let host = tempfile::tempdir().expect("host dir");
        std::fs::write(
            host.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nhostonly:x:4242:4242::/h:/bin/sh\n",
        )
        .expect("passwd");
        std::fs::write(host.path().join("secret.txt"), "host secret\n").expect("secret");
        let target = host.path().display().to_string();
        let image = format!(
            "{}/berth-daemon-test/{}:v1",
            env.registry,
            unique(&format!("hostile-{snapshotter}"))
        );
        push_with_layer(
            env,
            &env.busybox_image,
            &[
                Entry::Link("etc".into(), target.clone()),
                Entry::Link("root".into(), target.clone()),
                Entry::Dir("srv".into()),
                Entry::Link("srv/link".into(), target.clone()),
                Entry::Link("rel".into(), format!("../../../../../../../..{target}")),
            ],
            &image,
        );
        Hostile { host, image }
    }
}

async fn engine(env: &TestEnv, snapshotter: &str) -> ContainerdEngine {
    ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        snapshotter: Some(snapshotter.to_string()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"))
}

fn run(command: &str, mounts: Vec<Mount>) -> Step {
    Step::Run(RunStep {
        command: command.to_string(),
        mounts,
    })
}

async fn hostile_images_stay_inside_their_root(snapshotter: &str) {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env, snapshotter).await;
    let hostile = Hostile::push(env, snapshotter);
    let host = hostile.host.path();
    let tag = format!(
        "{}/berth-daemon-test/{}:v1",
        env.registry,
        unique("hostile-out")
    );

    // USER reads the image's /etc/passwd: the image has none (its /etc leads nowhere inside it)
    let user = plan(
        &hostile.image,
        vec![Step::User("hostonly".into()), run("true", vec![])],
    );
    let err = engine
        .build(&user, &build_options(env, &tag), &NoProgress)
        .await
        .map(drop)
        .expect_err("USER hostonly exists only in the host folder the image's /etc links to");
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    assert!(err.to_string().contains("no user `hostonly`"), "{err}");

    // WORKDIR through links: the folders are made inside the image, never in the host folder
    let workdirs = plan(
        &hostile.image,
        vec![
            Step::Workdir("/srv/link/made-by-berth".into()),
            run("test -d /srv/link/made-by-berth", vec![]),
            Step::Workdir("/root/also-made".into()),
            run("test -d /root/also-made", vec![]),
        ],
    );
    let built = engine
        .build(&workdirs, &build_options(env, &tag), &NoProgress)
        .await;
    assert!(
        !host.join("made-by-berth").exists() && !host.join("also-made").exists(),
        "a WORKDIR made a folder on the host"
    );
    built.unwrap_or_else(|e| panic!("WORKDIR through the image's links: {e}"));

    // a helper image's mount source resolves inside the helper
    for source in ["/srv/link/secret.txt", "/etc/secret.txt", "/rel/secret.txt"] {
        let mut mounted = plan(
            &env.busybox_image,
            vec![run(
                "cat /mnt/leak",
                vec![Mount::Image {
                    alias: "evil".into(),
                    source: source.into(),
                    target: "/mnt/leak".into(),
                }],
            )],
        );
        mounted.helper_images = vec![HelperImage {
            alias: "evil".into(),
            reference: hostile.image.clone(),
        }];
        let err = engine
            .build(&mounted, &build_options(env, &tag), &NoProgress)
            .await
            .map(drop)
            .expect_err("the helper's link leads outside it");
        assert_eq!(err.kind(), ErrorKind::BuildFailed, "{source}: {err}");
        assert!(err.to_string().contains("has no file"), "{source}: {err}");
    }

    let _ = engine.remove(&tag, RemoveOptions::default()).await;
    let _ = engine
        .remove(&hostile.image, RemoveOptions::default())
        .await;
    let _ = registry::delete(env, &hostile.image);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_images_stay_inside_their_root_on_overlayfs() {
    hostile_images_stay_inside_their_root("overlayfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_images_stay_inside_their_root_on_native() {
    hostile_images_stay_inside_their_root("native").await;
}

/// A RUN step's seccomp filter refuses what needs no capability but opens kernel code to the step: a user
/// namespace (`unshare -U`, which root without a filter may create; the others need `CAP_SYS_ADMIN`). A step
/// as a non-root user has no capabilities at all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn steps_cannot_create_namespaces_or_keep_capabilities() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env, "overlayfs").await;
    let tag = format!(
        "{}/berth-daemon-test/namespaces-{}:v1",
        env.registry,
        std::process::id()
    );
    let refused = plan(
        &env.busybox_image,
        vec![
            Step::Env(vec![("RUN_ID".into(), unique("ns"))]),
            run(
                "busybox --list | grep -qx unshare || { echo no unshare applet; exit 2; }; \
                 for ns in -U -m -n -p; do \
                 if unshare $ns true 2>/dev/null; then echo \"unshare $ns worked\"; exit 1; fi; done",
                vec![],
            ),
            // a non-root USER keeps no capability (no ambient or inheritable ones)
            Step::User("nobody".into()),
            run(
                "grep Cap /proc/self/status; grep -Eq \"^CapEff:[[:space:]]+0+$\" /proc/self/status \
                 && grep -Eq \"^CapAmb:[[:space:]]+0+$\" /proc/self/status",
                vec![],
            ),
        ],
    );
    engine
        .build(&refused, &build_options(env, &tag), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("a step created a namespace or kept capabilities: {e}"));
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}

/// A context file a RUN step mounts is the copy berth hashed for the step cache, not the original read again
/// later: a /proc file (whose contents depend on who reads it, as a file being rewritten depends on when) shows the
/// step what berth read, the test process's own status, not the status of whichever process opened it last.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_mounts_are_the_bytes_that_were_hashed() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env, "overlayfs").await;
    let status = std::fs::read_to_string("/proc/self/status").expect("own status");
    let name = status
        .lines()
        .find_map(|l| l.strip_prefix("Name:"))
        .expect("a Name line")
        .trim()
        .to_string();
    let mut mounted = plan(
        &env.busybox_image,
        vec![
            Step::Env(vec![(
                "RUN_ID".into(),
                unique("pinned"),
            )]),
            run(
                &format!("grep \"^Name:\" /mnt/status; grep -q \"^Name:[[:space:]]*{name}$\" /mnt/status"),
                vec![Mount::Context {
                    source: "status".into(),
                    target: "/mnt/status".into(),
                }],
            ),
        ],
    );
    mounted.context = vec![ContextEntry {
        path: "status".into(),
        source: ContextSource::File("/proc/self/status".into()),
    }];
    let tag = format!(
        "{}/berth-daemon-test/pinned-{}:v1",
        env.registry,
        std::process::id()
    );
    engine
        .build(&mounted, &build_options(env, &tag), &NoProgress)
        .await
        .unwrap_or_else(|e| panic!("the step did not see what berth hashed (Name: {name}): {e}"));
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
}

/// A context file that gives more bytes than its size said (as one growing during the copy does; a /proc file
/// always does) fails the COPY step with its name, instead of a layer whose tar entry runs past its header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_source_that_grows_fails_the_step() {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = engine(env, "overlayfs").await;
    let mut copying = plan(
        &env.busybox_image,
        vec![Step::Copy(CopyStep {
            sources: vec!["status".into()],
            destination: "/srv/".into(),
            chown: None,
        })],
    );
    copying.context = vec![ContextEntry {
        path: "status".into(),
        source: ContextSource::File("/proc/self/status".into()),
    }];
    let tag = format!(
        "{}/berth-daemon-test/growing-{}:v1",
        env.registry,
        std::process::id()
    );
    let err = engine
        .build(&copying, &build_options(env, &tag), &NoProgress)
        .await
        .map(drop)
        .expect_err("the file gave more bytes than its size");
    assert_eq!(err.kind(), ErrorKind::BuildFailed, "{err}");
    assert!(err.to_string().contains("/proc/self/status grew"), "{err}");
    assert!(err.hint().is_some(), "{err}");
}
