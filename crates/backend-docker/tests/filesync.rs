//! The BuildKit build context through the session's file sync (`DockerOptions::context_by_file_sync`, the
//! default; set here so the tests keep testing it), on the real test daemon: a rebuild after one file
//! of a large context changed sends only that file, and a file that changes while berth reads it fails the build
//! naming it. Needs `scripts/env/up.sh`.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use berth_backend_docker::{DockerEngine, DockerOptions, CONTEXT_TRANSFER};
use berth_core::engine::{BuildOptions, ContainerEngine, ProgressEvent};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Step};
use berth_core::ErrorKind;
use common::{docker, engine, env, plan, unique, Cleanup, Record};

/// Files of the large context, and bytes in each.
const FILES: usize = 48;
const FILE_SIZE: usize = 2 << 20;

/// The bytes of file `index`, version `version`: distinct per file and version, same size.
fn content(index: usize, version: u8) -> Vec<u8> {
    let line = format!("file {index:02} version {version}\n");
    line.as_bytes()
        .iter()
        .copied()
        .cycle()
        .take(FILE_SIZE)
        .collect()
}

/// The test daemon with the context through file sync (the default, named so these tests keep testing it).
async fn syncing_engine() -> DockerEngine {
    engine(DockerOptions {
        context_by_file_sync: true,
        ..DockerOptions::default()
    })
    .await
}

fn options(env: &common::TestEnv, tag: &str) -> BuildOptions {
    BuildOptions {
        tags: vec![tag.to_string()],
        credentials: vec![env.credentials()],
        ..BuildOptions::default()
    }
}

/// The (sent, total) bytes the build reported for its context.
fn context_transfer(record: &Record) -> (u64, u64) {
    let events = record.0.lock().expect("lock");
    let found = events.iter().rev().find_map(|e| match e {
        ProgressEvent::Transfer { id, current, total } if id == CONTEXT_TRANSFER => {
            Some((*current, total.unwrap_or_default()))
        }
        _ => None,
    });
    found.expect("a BuildKit build reports its context transfer")
}

#[tokio::test]
async fn a_rebuild_sends_only_the_context_file_that_changed() {
    let Some(env) = env() else {
        return;
    };
    let engine = syncing_engine().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let entries: Vec<ContextEntry> = (0..FILES)
        .map(|i| {
            let path = dir.path().join(format!("f{i:02}"));
            std::fs::write(&path, content(i, 1)).expect("write");
            ContextEntry {
                path: format!("data/f{i:02}"),
                source: ContextSource::File(path),
            }
        })
        .collect();
    let plan = plan(
        &env,
        vec![Step::Copy(CopyStep {
            sources: vec!["data".into()],
            destination: "/data/".into(),
            chown: None,
        })],
        entries,
    );
    let tag = format!("berth-test/{}:1", unique("filesync"));
    let _cleanup = Cleanup(vec![tag.clone()]);
    let options = options(&env, &tag);
    let total = (FILES * FILE_SIZE) as u64;

    let first = Record::default();
    engine.build(&plan, &options, &first).await.expect("builds");
    let (sent, reported_total) = context_transfer(&first);
    assert_eq!(reported_total, total, "the context's size");
    assert!(
        sent >= total,
        "the first build sent {sent} of {total} bytes"
    );

    std::fs::write(dir.path().join("f07"), content(7, 2)).expect("rewrite");
    let second = Record::default();
    engine
        .build(&plan, &options, &second)
        .await
        .expect("rebuilds");
    let (sent, _) = context_transfer(&second);
    assert_eq!(
        sent, FILE_SIZE as u64,
        "the rebuild sent {sent} bytes, not just the changed file's {FILE_SIZE}"
    );
    let head = docker(&["run", "--rm", &tag, "head", "-n1", "/data/f07"]);
    assert_eq!(String::from_utf8_lossy(&head), "file 07 version 2\n");
    let other = docker(&["run", "--rm", &tag, "head", "-n1", "/data/f08"]);
    assert_eq!(String::from_utf8_lossy(&other), "file 08 version 1\n");
}

#[tokio::test]
async fn a_context_file_growing_while_read_fails_the_build_naming_it() {
    let Some(env) = env() else {
        return;
    };
    let engine = syncing_engine().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let log = dir.path().join("growing.log");
    std::fs::write(&log, content(0, 1)).expect("write");
    // a log being written: it grows between the moment berth announces its size and the end of its read
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (stop, log) = (Arc::clone(&stop), log.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut file = std::fs::OpenOptions::new()
                .append(true)
                .open(&log)
                .expect("open for append");
            while !stop.load(Ordering::Relaxed) {
                file.write_all(&[b'x'; 1024]).expect("append");
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        })
    };
    let plan = plan(
        &env,
        vec![Step::Copy(CopyStep {
            sources: vec!["growing.log".into()],
            destination: "/".into(),
            chown: None,
        })],
        vec![ContextEntry {
            path: "growing.log".into(),
            source: ContextSource::File(log.clone()),
        }],
    );
    let tag = format!("berth-test/{}:1", unique("growing"));
    let _cleanup = Cleanup(vec![tag.clone()]);
    let options = options(&env, &tag);
    let result = engine.build(&plan, &options, &Record::default()).await;
    stop.store(true, Ordering::Relaxed);
    writer.join().expect("writer");
    let err = result.expect_err("a file growing while read fails the build");
    assert_eq!(err.kind(), ErrorKind::Io, "{err}");
    assert!(
        err.message().contains("growing.log")
            && err.message().contains("while berth was reading it"),
        "{err}"
    );
}
