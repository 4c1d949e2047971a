//! Reliability under registry faults: every registry operation berth does with its own client, run through a
//! fault-injecting proxy (`berth_tests::faults`) once per fault and request class. Each must succeed after
//! retries or fail with a classified error within [`HANG_BOUND`]; after every push the registry itself (not the
//! proxy) must hold either no tag or a complete image. Prints the outcome table; asserts hung == 0 and
//! corrupt == 0.
//!
//! Run: `source /var/lib/berth-env/env.sh && cargo test -p berth-tests --test faults -- --nocapture`;
//! `BERTH_FAULTS_ONLY=docker build,podman build` runs only the operations whose table name holds one of those
//! comma-separated words (one `#[test]` runs them all, so cargo's own filter cannot pick among them).

mod builds;
mod cli;
mod image;
mod ops;

use std::sync::Arc;
use std::time::Duration;

use berth_tests::env::TestEnv;
use berth_tests::faults::{Class, Fault, FaultPlan, FaultProxy, Outcome, Row, Table};
use tokio::sync::{Mutex, Semaphore};

use ops::{Fixtures, Operation};

/// How long one operation may take before it counts as hung. berth's CLI waits 30 s for a silent answer
/// before retrying (it has no option to shorten that), so a stall costs it one such wait.
const HANG_BOUND: Duration = Duration::from_secs(75);

/// Operations running at once: the machine is small and shared; enough that the waits overlap.
const PARALLEL: usize = 10;

#[test]
fn registry_faults_never_hang_or_corrupt() {
    let Some(env) = TestEnv::selected() else {
        return;
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let table = runtime.block_on(run_all(env));
    println!("\n{}", table.render());
    assert_eq!(table.hung(), 0, "operations hung:\n{}", table.render());
    assert_eq!(
        table.corrupt(),
        0,
        "operations left or returned corrupt images:\n{}",
        table.render()
    );
    // the proxy must have hit something, or the table measures nothing
    // a token that died mid-upload is renewed by berth's own pushes, which read the data again
    let dropped: Vec<_> = table
        .rows()
        .iter()
        .filter(|r| r.fault == Fault::Expired && r.outcome != Outcome::Survived)
        .filter(|r| {
            Operation::ALL
                .iter()
                .any(|o| o.name() == r.operation && o.starts_over())
        })
        .collect();
    assert!(
        dropped.is_empty(),
        "pushes that gave up after one 401 mid-upload: {dropped:?}\n{}",
        table.render()
    );
    let injected: u32 = table.rows().iter().map(|r| r.injected).sum();
    assert!(
        injected as usize >= table.rows().len() / 2,
        "{}",
        table.render()
    );
    runtime.shutdown_timeout(Duration::from_secs(1));
}

async fn run_all(env: &'static TestEnv) -> Table {
    let fixtures = Arc::new(Fixtures::prepare(env).await);
    let table = Arc::new(Mutex::new(Table::default()));
    let limit = Arc::new(Semaphore::new(PARALLEL));
    let mut tasks = Vec::new();
    let only = std::env::var("BERTH_FAULTS_ONLY").unwrap_or_default();
    let selected = |operation: &Operation| {
        only.trim().is_empty()
            || only
                .split(',')
                .any(|word| operation.name().contains(word.trim()))
    };
    for operation in Operation::ALL.into_iter().filter(selected) {
        for class in operation.classes() {
            let faults = Fault::ALL
                .into_iter()
                .filter(|f| f.applies_to(*class) && operation.meets(*f));
            for (fault, skip) in
                faults.flat_map(|f| operation.skips(*class).iter().map(move |s| (f, *s)))
            {
                let plan = FaultPlan {
                    fault,
                    class: *class,
                    times: fault.burst(),
                };
                let (fixtures, table, limit) = (fixtures.clone(), table.clone(), limit.clone());
                tasks.push(tokio::spawn(async move {
                    let _permit = limit.acquire().await.expect("semaphore");
                    let row = scenario(env, &fixtures, operation, plan, skip).await;
                    table.lock().await.push(row);
                }));
            }
        }
    }
    for task in tasks {
        task.await.expect("scenario task");
    }
    fixtures.clean_up().await;
    let mut table = Arc::try_unwrap(table).expect("tasks done").into_inner();
    table.sort();
    table
}

async fn scenario(
    env: &'static TestEnv,
    fixtures: &Fixtures,
    operation: Operation,
    plan: FaultPlan,
    skip: u32,
) -> Row {
    let proxy = FaultProxy::start_after(&env.registry, plan, skip)
        .await
        .expect("start the fault proxy");
    let run = operation.run(env, fixtures, &proxy);
    let started = std::time::Instant::now();
    let (outcome, mut detail) = match tokio::time::timeout(HANG_BOUND, run).await {
        Ok(result) => result,
        Err(_) => (
            Outcome::Hung,
            format!("still running after {} s", HANG_BOUND.as_secs()),
        ),
    };
    // how long the engine's own retries (or berth's bound) took, for the README's account of them
    let took = started.elapsed().as_secs_f32();
    println!(
        "{} / {} (skip {skip}) / {}: {outcome:?} in {took:.1} s",
        plan.fault.name(),
        plan.class.name(),
        operation.name()
    );
    if !detail.is_empty() {
        detail = format!("{detail} (after {took:.1} s)");
    }
    Row {
        fault: plan.fault,
        class: plan.class,
        skip,
        operation: operation.name().to_string(),
        injected: proxy.injected(),
        outcome,
        detail,
    }
}

/// Classes each operation's requests fall in, which are the ones worth faulting.
impl Operation {
    /// How many requests of `class` pass before the fault, one run each: the daemons' pulls also get the fault
    /// on their second blob `GET` (the first is the image config; the second downloads the layer).
    fn skips(self, class: Class) -> &'static [u32] {
        let daemon_pull = matches!(
            self,
            Operation::DockerBuildPull
                | Operation::PodmanBuildPull
                | Operation::RootlessPodmanBuildPull
        );
        if daemon_pull && class == Class::BlobGet {
            &[0, 1]
        } else {
            &[0]
        }
    }

    /// Whether the push starts over after a 401 mid-upload: berth's own upload of data it can read again, and
    /// the CLI's push whatever pushes (made again whole once after a 401), but not the engine's push alone.
    fn starts_over(self) -> bool {
        matches!(
            self,
            Operation::ClientPush
                | Operation::ContainerdPush
                | Operation::LxdPush
                | Operation::CliPushDocker
                | Operation::CliPushPodman
                | Operation::CliPushRootless
                | Operation::CliEnginePushDocker
                | Operation::CliExportPushPodman
        )
    }

    /// Whether the operation meets `fault`: a stalled registry is dockerd's to notice when dockerd pushes, and
    /// the CLI keeps its default of 30 minutes' silence from the daemon (longer than the hang bound).
    fn meets(self, fault: Fault) -> bool {
        !(self == Operation::CliEnginePushDocker && fault == Fault::Stall)
    }

    fn classes(self) -> &'static [Class] {
        match self {
            Operation::ClientExists | Operation::CliExists => &[Class::Ping, Class::ManifestHead],
            Operation::ClientPull
            | Operation::ContainerdBuildPull
            | Operation::LxdBuildPull
            | Operation::DockerBuildPull
            | Operation::PodmanBuildPull
            | Operation::RootlessPodmanBuildPull => &[Class::ManifestGet, Class::BlobGet],
            Operation::ClientPush
            | Operation::ContainerdPush
            | Operation::DockerPush
            | Operation::PodmanPush
            | Operation::CliPushDocker
            | Operation::CliPushPodman
            | Operation::LxdPush
            | Operation::RootlessPodmanPush
            | Operation::CliPushRootless
            | Operation::CliEnginePushDocker
            | Operation::CliExportPushPodman => &[Class::BlobUpload, Class::ManifestPut],
        }
    }
}
