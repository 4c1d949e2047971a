//! The service's facts (`/libpod/info`) are remembered between runs for the service process that gave them, and
//! only for it. Runs against the rootful service scripts/env/up.sh starts, as a user's default setup has it.

use std::path::PathBuf;

use berth_backend_podman::{PodmanEngine, PodmanOptions};
use berth_core::engine::ContainerEngine;
use berth_tests::env::TestEnv;
use serde_json::Value;

fn the_record(dir: &std::path::Path) -> PathBuf {
    let records: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the facts folder")
        .flatten()
        .map(|e| e.path())
        .collect();
    assert_eq!(records.len(), 1, "one record and nothing else: {records:?}");
    records.into_iter().next().expect("one")
}

fn read(path: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).expect("record")).expect("JSON record")
}

#[tokio::test]
async fn facts_are_remembered_for_the_serving_process_only() {
    let env = TestEnv::load().expect("run scripts/env/up.sh first");
    let dir = tempfile::tempdir().expect("temp dir");
    let options = PodmanOptions {
        socket: Some(env.podman_socket.display().to_string()),
        facts_dir: Some(dir.path().join("podman-services")),
        ..PodmanOptions::default()
    };
    let version = || async {
        let engine = PodmanEngine::connect(options.clone())
            .await
            .expect("connect");
        engine.info().await.expect("info").version
    };

    let asked = version().await;
    assert!(!asked.is_empty(), "the service said its version");
    let path = the_record(&dir.path().join("podman-services"));
    let mut record = read(&path);
    assert_eq!(record["version"], asked.as_str());
    assert!(
        record["pid"].as_u64().is_some_and(|pid| pid > 1),
        "{record}"
    );
    assert!(
        record["graph_root"].as_str().is_some_and(|r| !r.is_empty()),
        "{record}"
    );

    // answered from the record while the same process serves: a version written into it shows
    record["version"] = "remembered".into();
    std::fs::write(&path, record.to_string()).expect("write");
    assert_eq!(version().await, "remembered");

    // a record of the same pid started at another time is not that process's: asked again, and renewed
    record["start"] = (record["start"].as_u64().expect("start") + 1).into();
    std::fs::write(&path, record.to_string()).expect("write");
    assert_eq!(version().await, asked);
    assert_eq!(
        read(&the_record(&dir.path().join("podman-services")))["version"],
        asked.as_str()
    );
}
