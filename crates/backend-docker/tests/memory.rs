//! The build context is streamed: a 300 MB context file raises this process's peak memory by a few MB, not
//! by its size, with BuildKit and with the classic builder. Alone in its binary so no other test's memory
//! counts. Peak RSS is the kernel's `VmHWM` for this process.

mod common;

use berth_backend_docker::{Builder, DockerOptions};
use berth_core::engine::{BuildOptions, ContainerEngine};
use berth_core::plan::{ContextEntry, ContextSource, CopyStep, Step};
use common::{engine, env, plan, run, unique, Cleanup, Record};

const SIZE: u64 = 300 * 1024 * 1024;
/// What streaming may cost: buffers, the tar thread, hyper; far below the context's size.
const BOUND: u64 = 40 * 1024 * 1024;

fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let line = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .expect("VmHWM line");
    let kib: u64 = line
        .split_whitespace()
        .nth(1)
        .and_then(|n| n.parse().ok())
        .expect("VmHWM in kB");
    kib * 1024
}

#[tokio::test]
async fn a_large_context_is_streamed_not_held_in_memory() {
    let Some(env) = env() else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let big = dir.path().join("big.bin");
    std::fs::File::create(&big)
        .and_then(|f| f.set_len(SIZE))
        .expect("sparse file");
    let plan = plan(
        &env,
        vec![
            Step::Copy(CopyStep {
                sources: vec!["data/big.bin".into()],
                destination: "/big.bin".into(),
                chown: None,
            }),
            run(&format!("test \"$(stat -c %s /big.bin)\" = {SIZE}"), vec![]),
        ],
        vec![ContextEntry {
            path: "data/big.bin".into(),
            source: ContextSource::File(big),
        }],
    );
    for builder in [Builder::Auto, Builder::Classic] {
        let engine = engine(DockerOptions {
            builder,
            ..DockerOptions::default()
        })
        .await;
        let tag = format!("berth-test/{}:1", unique("big-context"));
        let _cleanup = Cleanup(vec![tag.clone()]);
        let options = BuildOptions {
            tags: vec![tag.clone()],
            credentials: vec![env.credentials()],
            no_cache: true,
            ..BuildOptions::default()
        };
        let before = peak_rss();
        let started = std::time::Instant::now();
        engine
            .build(&plan, &options, &Record::default())
            .await
            .expect("builds with a 300 MB context");
        let grew = peak_rss().saturating_sub(before);
        eprintln!(
            "{builder:?}: 300 MB context built in {:.1?}, peak RSS grew by {:.1} MiB (before: {:.1} MiB)",
            started.elapsed(),
            grew as f64 / 1048576.0,
            before as f64 / 1048576.0
        );
        assert!(
            grew < BOUND,
            "{builder:?}: peak RSS grew by {grew} bytes for a {SIZE}-byte context"
        );
    }
}
