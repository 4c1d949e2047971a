//! What a build or pull creates in containerd, removed whatever happens.
//!
//! A [`Guard`] owns a lease (with an expiry label, so containerd's collector drops it even if berth is killed)
//! and records every task, container, active snapshot, ingest and local folder made under it. [`Guard::finish`]
//! removes them in order (kill and delete tasks, delete containers, remove snapshots, abort ingests, delete the
//! lease, remove the folders). When the operation's future is dropped instead (an error path that returned early, or Ctrl-C), `Drop` starts
//! the same on a thread of its own with a fresh connection, so it works on any runtime and even while the runtime
//! is shutting down, and returns at once: the dropping task (and every other image of a project build) goes on.
//! A process that is about to exit waits for those threads with [`wait_for_cleanups`], so it leaves nothing
//! behind.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use berth_core::Result;

use crate::convert::Daemon;
use crate::errors::Op;
use crate::labels::{rfc3339, unique_id};
use crate::ContainerdEngine;

/// How long a lease outlives a berth that died without deleting it.
const LEASE_EXPIRY: Duration = Duration::from_secs(24 * 3600);
/// Upper bound for a cleanup run from `Drop`.
const DROP_CLEANUP_LIMIT: Duration = Duration::from_secs(60);
/// How long requests of a dropped build may take to land in containerd.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(500);
/// How long a dropped build's cleanup watches for its lease to appear when the request creating it was in flight
/// (a request queued behind a connection being opened can land after the first grace).
const LATE_LEASE_WATCH: Duration = Duration::from_secs(5);
/// SIGKILL.
const SIGKILL: u32 = 9;

#[derive(Debug, Default)]
struct Pending {
    tasks: Vec<String>,
    containers: Vec<String>,
    snapshots: Vec<String>,
    ingests: Vec<String>,
    dirs: Vec<PathBuf>,
}

/// Removes what an operation created (see the module doc).
#[derive(Debug)]
pub(crate) struct Guard {
    daemon: Daemon,
    lease: String,
    pending: Arc<Mutex<Pending>>,
    reconnect: (PathBuf, String, String, Duration),
    finished: bool,
    /// True while the request creating the lease has not answered (it may still land after a drop).
    lease_in_flight: bool,
}

impl Guard {
    /// Creates a lease for `purpose`; returns the guard and a connection whose requests all use that lease.
    pub(crate) async fn lease(
        engine: &ContainerdEngine,
        purpose: &str,
        op: Op,
    ) -> Result<(Guard, Daemon)> {
        let lease = unique_id(purpose);
        let expire = rfc3339(SystemTime::now() + LEASE_EXPIRY);
        let o = &engine.options;
        // the guard exists before the lease does: dropped while the request is in flight, it still deletes it
        let mut guard = Guard {
            daemon: engine.daemon.clone(),
            lease: lease.clone(),
            pending: Arc::default(),
            reconnect: (
                o.address.clone(),
                o.namespace.clone(),
                o.snapshotter.clone(),
                o.connect_timeout,
            ),
            finished: false,
            lease_in_flight: true,
        };
        let leased = engine.daemon.with_lease(&lease)?;
        let created = engine.daemon.create_lease(&lease, &expire, op).await;
        guard.lease_in_flight = false;
        created?;
        Ok((guard, leased))
    }

    /// The lease's id.
    pub(crate) fn lease_id(&self) -> &str {
        &self.lease
    }

    fn with<T>(&self, f: impl FnOnce(&mut Pending) -> T) -> T {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        f(&mut pending)
    }

    /// A task to kill and delete.
    pub(crate) fn task(&self, id: &str) {
        self.with(|p| p.tasks.push(id.to_string()));
    }

    /// A container to delete.
    pub(crate) fn container(&self, id: &str) {
        self.with(|p| p.containers.push(id.to_string()));
    }

    /// An active snapshot or view to remove.
    pub(crate) fn snapshot(&self, key: &str) {
        self.with(|p| p.snapshots.push(key.to_string()));
    }

    /// An ingest to abort.
    pub(crate) fn ingest(&self, reference: &str) {
        self.with(|p| p.ingests.push(reference.to_string()));
    }

    /// A local folder to delete.
    pub(crate) fn dir(&self, path: PathBuf) {
        self.with(|p| p.dirs.push(path));
    }

    /// Forgets a task that was deleted normally.
    pub(crate) fn task_done(&self, id: &str) {
        self.with(|p| p.tasks.retain(|t| t != id));
    }

    /// Forgets a container that was deleted normally.
    pub(crate) fn container_done(&self, id: &str) {
        self.with(|p| p.containers.retain(|c| c != id));
    }

    /// Forgets a snapshot that was committed or removed normally.
    pub(crate) fn snapshot_done(&self, key: &str) {
        self.with(|p| p.snapshots.retain(|s| s != key));
    }

    /// Forgets an ingest that was committed.
    pub(crate) fn ingest_done(&self, reference: &str) {
        self.with(|p| p.ingests.retain(|i| i != reference));
    }

    /// Removes everything now (kill tasks, delete containers, remove snapshots, abort ingests, delete the
    /// lease); the first failure is returned after trying everything.
    pub(crate) async fn finish(mut self) -> Result<()> {
        self.finished = true;
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        run(&self.daemon, &self.lease, pending).await
    }
}

/// Kills a task and waits (bounded) for it to exit, then deletes it and its container.
pub(crate) async fn stop_task(daemon: &Daemon, id: &str) -> Result<()> {
    daemon.kill_task(id, SIGKILL, Op::Build).await?;
    let _ = tokio::time::timeout(Duration::from_secs(20), daemon.wait_task(id, Op::Build)).await;
    daemon.delete_task(id, Op::Build).await
}

async fn run(daemon: &Daemon, lease: &str, pending: Pending) -> Result<()> {
    let mut first = None;
    let mut note = |r: Result<()>| {
        if let Err(e) = r {
            first.get_or_insert(e);
        }
    };
    for id in &pending.tasks {
        note(stop_task(daemon, id).await);
    }
    for id in &pending.containers {
        note(daemon.delete_container(id, Op::Build).await);
    }
    for key in pending.snapshots.iter().rev() {
        note(daemon.remove_snapshot(key, Op::Build).await);
    }
    for reference in &pending.ingests {
        // best effort: the lease's deletion lets containerd's collector drop it too
        let _ = daemon.abort_ingest(reference, Op::Build).await;
    }
    note(daemon.delete_lease(lease, Op::Build).await);
    // a reader still blocked opening a FIFO of a task that never started must wake up and end, before the
    // build's folder (which holds the FIFOs) goes
    for dir in &pending.dirs {
        for name in ["stdout", "stderr"] {
            crate::build::release_fifo(&dir.join(name));
        }
    }
    for dir in &pending.dirs {
        let _ = std::fs::remove_dir_all(dir);
    }
    first.map_or(Ok(()), Err)
}

/// Watches for `lease` (whose creation was in flight when the build was dropped) and deletes it if it appears.
async fn remove_late_lease(daemon: &Daemon, lease: &str) -> Result<()> {
    let deadline = tokio::time::Instant::now() + LATE_LEASE_WATCH;
    while tokio::time::Instant::now() < deadline {
        if daemon
            .lease_ids(lease, Op::Build)
            .await?
            .iter()
            .any(|id| id == lease)
        {
            return daemon.delete_lease(lease, Op::Build).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

/// The ids of `existing` that are among `ours`.
fn still_there(existing: Vec<String>, ours: &[String]) -> Vec<String> {
    existing
        .into_iter()
        .filter(|id| ours.contains(id))
        .collect()
}

impl Drop for Guard {
    fn drop(&mut self) {
        if self.finished {
            return;
        }
        let pending = std::mem::take(&mut *self.pending.lock().unwrap_or_else(|p| p.into_inner()));
        let lease = std::mem::take(&mut self.lease);
        let (address, namespace, snapshotter, timeout) = self.reconnect.clone();
        let lease_in_flight = self.lease_in_flight;
        let work = move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            let Ok(runtime) = runtime else {
                eprintln!("berth: cannot clean up containerd lease {lease}: no runtime");
                return;
            };
            runtime.block_on(async move {
                let cleanup = async {
                    let daemon = Daemon::connect(&address, &namespace, &snapshotter, timeout).await?;
                    // A request the dropped future had sent may still land after this cleanup removed what it
                    // knew of (a container created a moment later): give such requests time to land, and look
                    // again afterwards for tasks and containers (which no lease holds).
                    tokio::time::sleep(IN_FLIGHT_GRACE).await;
                    let (tasks, containers) = (pending.tasks.clone(), pending.containers.clone());
                    let first = run(&daemon, &lease, pending).await;
                    tokio::time::sleep(IN_FLIGHT_GRACE).await;
                    let late = Pending {
                        tasks: still_there(daemon.task_ids(crate::ID_PREFIX, Op::Build).await?, &tasks),
                        containers: still_there(
                            daemon.container_ids(crate::ID_PREFIX, Op::Build).await?,
                            &containers,
                        ),
                        ..Pending::default()
                    };
                    if !late.tasks.is_empty() || !late.containers.is_empty() {
                        run(&daemon, &lease, late).await?;
                    }
                    if lease_in_flight {
                        remove_late_lease(&daemon, &lease).await?;
                    }
                    first
                };
                match tokio::time::timeout(DROP_CLEANUP_LIMIT, cleanup).await {
                    Ok(Ok(())) => {}
                    Ok(Err(e)) => eprintln!("berth: cleaning up after an interrupted containerd build: {e}"),
                    Err(_) => eprintln!(
                        "berth: cleaning up lease {lease} took over {DROP_CLEANUP_LIMIT:?}; containerd drops it when it expires"
                    ),
                }
            });
        };
        // A thread of its own: Drop may run inside a runtime, where nesting block_on is not allowed, and waiting
        // here would hold up the dropping thread's other tasks for seconds. It is joined by wait_for_cleanups
        // before the process exits.
        berth_core::background::spawn("berth-containerd-cleanup", work);
    }
}

/// Waits until every cleanup that a dropped build or pull started has ended (each is bounded, see
/// `DROP_CLEANUP_LIMIT`). Call it before the process exits, outside any runtime or on a blocking thread: after
/// Ctrl-C, when the runtime has dropped the interrupted builds.
pub fn wait_for_cleanups() {
    berth_core::background::wait();
}
