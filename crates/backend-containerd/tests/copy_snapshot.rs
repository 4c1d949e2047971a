//! COPY steps written into their snapshot by berth (no diff-service unpack) against the real containerd of
//! `scripts/env/up.sh`, on the overlayfs and the native snapshotter: the files, the folders the layer creates and
//! the image's folders above them are what a RUN step after the COPY sees, with the modes, owners and times the
//! layer describes; a COPY through a link in the image is left to the diff service and lands as before.

use std::os::unix::fs::PermissionsExt as _;
use std::sync::Mutex;

use berth_backend_containerd::{ContainerdEngine, ContainerdOptions};
use berth_core::engine::{BuildOptions, ContainerEngine, Progress, ProgressEvent, RemoveOptions};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Step};
use berth_tests::conformance::support::{build_options, checks, plan, run, unique};
use berth_tests::env::TestEnv;

/// What berth says when the diff service unpacks a COPY layer.
const UNPACKED_BY_CONTAINERD: &str = "containerd's diff service unpacks the COPY layer";

#[derive(Default)]
struct Lines(Mutex<Vec<String>>);

impl Progress for Lines {
    fn event(&self, event: ProgressEvent) {
        if let (ProgressEvent::Line(line), Ok(mut lines)) = (event, self.0.lock()) {
            lines.push(line);
        }
    }
}

async fn copies_land_in_the_snapshot(snapshotter: &str) {
    let Some(env) = TestEnv::for_engine("containerd") else {
        return;
    };
    let engine = ContainerdEngine::connect(ContainerdOptions {
        address: Some(env.containerd_address.display().to_string()),
        snapshotter: Some(snapshotter.to_string()),
        ..ContainerdOptions::default()
    })
    .await
    .unwrap_or_else(|e| panic!("run scripts/env/up.sh first: {e}"));
    let files = tempfile::tempdir().expect("temp dir");
    let tool = files.path().join("tool");
    let text: String = (0..30_000).map(|n| format!("line {n}\n")).collect();
    std::fs::write(&tool, &text).expect("write");
    std::fs::set_permissions(&tool, std::fs::Permissions::from_mode(0o4755)).expect("chmod");
    let size = text.len().to_string();
    // the native snapshotter copies the parent into each new snapshot, and its copy gives folders the time of
    // the copy: the RUN after the COPY sees the layer's time on a folder only on overlayfs
    let sub_folder = if snapshotter == "overlayfs" {
        "test \"$(stat -c %a-%u:%g-%Y /srv/real/sub)\" = 755-7:8-946684800"
    } else {
        "test \"$(stat -c %a-%u:%g /srv/real/sub)\" = 755-7:8"
    };
    let mut copying = plan(
        &env.busybox_image,
        vec![
            run("mkdir -p /srv/real && chmod 0750 /srv/real && chown 1:2 /srv/real && ln -s real /srv/link"),
            Step::Copy(CopyStep {
                sources: vec!["tool".into()],
                destination: "/srv/real/sub/".into(),
                chown: Some("7:8".into()),
            }),
            Step::Copy(CopyStep {
                sources: vec!["note.txt".into()],
                destination: "/srv/link/".into(),
                chown: None,
            }),
            run(checks(&[
                // the image's folder above the copy keeps its mode and owner
                "test \"$(stat -c %a-%u:%g /srv/real)\" = 750-1:2",
                // the folder the layer creates, and the file, as the layer's headers say
                sub_folder,
                &format!("test \"$(stat -c %a-%u:%g-%Y-%s /srv/real/sub/tool)\" = 4755-7:8-946684800-{size}"),
                "test \"$(wc -l < /srv/real/sub/tool)\" -eq 30000",
                "test \"$(tail -n 1 /srv/real/sub/tool)\" = \"line 29999\"",
                // by the diff service (which, on overlayfs, puts a folder in the link's place)
                "test \"$(cat /srv/link/note.txt)\" = note",
                "test \"$(stat -c %u:%g-%Y /srv/link/note.txt)\" = 0:0-946684800",
            ])),
        ],
    );
    copying.context = vec![
        ContextEntry {
            path: "tool".into(),
            source: ContextSource::File(tool),
        },
        ContextEntry {
            path: "note.txt".into(),
            source: ContextSource::Bytes(b"note".to_vec()),
        },
    ];
    let tag = format!(
        "{}/berth-daemon-test/{}:v1",
        env.registry,
        unique(&format!("copy-snapshot-{snapshotter}"))
    );
    let lines = Lines::default();
    let options = BuildOptions {
        no_cache: true,
        ..build_options(env, &tag)
    };
    let built = engine.build(&copying, &options, &lines).await;
    let _ = engine.remove(&tag, RemoveOptions::default()).await;
    let lines = lines.0.into_inner().expect("lines");
    built.unwrap_or_else(|e| panic!("build on {snapshotter}: {e}\n{}", lines.join("\n")));
    let unpacked: Vec<&String> = lines
        .iter()
        .filter(|l| l.contains(UNPACKED_BY_CONTAINERD))
        .collect();
    assert_eq!(
        unpacked,
        [&format!(
            "/srv/link is not a folder in the image: {UNPACKED_BY_CONTAINERD}"
        )],
        "only the COPY through a link goes to the diff service"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_land_in_an_overlay_snapshot() {
    copies_land_in_the_snapshot("overlayfs").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copies_land_in_a_native_snapshot() {
    copies_land_in_the_snapshot("native").await;
}
