//! Removing the container of a build that was dropped (Ctrl-C, SIGTERM, an error path that returned early), so
//! that berth ends leaving nothing in LXD.
//!
//! Two things made a task spawned on berth's runtime not enough: berth drops that runtime right after an
//! interrupted build, which cancels the task before LXD answered; and the request creating the container may
//! still be running in LXD (an operation of its own there, which goes on when berth hangs up), so a delete sent
//! at once finds nothing and the container appears a moment later. So, as containerd's cleanup guard does, the
//! removal runs on a thread of its own (`berth_core::background`) with its own runtime (LXD's client opens a connection per request, so it
//! works on any runtime), waits for LXD's operations on the container to end and deletes it. A front end joins
//! these threads with [`wait_for_cleanups`] before exiting (the provider's `wait_for_background_work`).
//!
//! The request creating the container is sent from a thread of its own too ([`Creation`]): a dropped build
//! hanging up halfway through it left LXD to make the container after the removal had looked (a loaded server
//! took more than the half second the removal then waited to turn the request into an operation), so the
//! removal waits for LXD's answer instead of guessing how long it takes. Only a request given up on before its
//! answer still gets a second look after a grace.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use berth_core::{ErrorKind, Operation, Result};
use http::Method;
use serde_json::Value;

use crate::api::Lxd;
use crate::errors::error;

/// Upper bound for one background removal; a container still there after it is the next build's to remove
/// (its berth's pid is gone by then).
const LIMIT: Duration = Duration::from_secs(60);
/// How long LXD may take to answer the request creating a container (with the operation that makes it).
const ANSWER_LIMIT: Duration = Duration::from_secs(30);
/// How long a creation request cut off on its way may take to reach LXD (see [`Creation`]).
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(500);
/// How often LXD's running operations are looked at.
const POLL: Duration = Duration::from_millis(200);

/// Where the request creating a container is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// Not sent: nothing can make the container.
    Not,
    /// On its way or being answered.
    InFlight,
    /// LXD answered (an operation making the container, or a refusal).
    Answered,
    /// Given up on before an answer: LXD may have read it and make the container later.
    CutOff,
}

/// The request creating a build's container, sent and answered on a thread of its own so that a dropped build
/// cannot hang up halfway through it (see the module doc). The removal reads where it is.
#[derive(Clone)]
pub(crate) struct Creation(Arc<Mutex<Sent>>);

impl Default for Creation {
    fn default() -> Self {
        Creation(Arc::new(Mutex::new(Sent::Not)))
    }
}

/// Marks the request answered or, when dropped first (the thread ended early, or never ran), cut off.
struct Answer(Arc<Mutex<Sent>>);

impl Answer {
    fn set(&self, sent: Sent) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = sent;
    }
}

impl Drop for Answer {
    fn drop(&mut self) {
        let mut sent = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if *sent == Sent::InFlight {
            *sent = Sent::CutOff;
        }
    }
}

impl Creation {
    fn get(&self) -> Sent {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// POSTs `body` to `/1.0/instances` from a thread of its own and waits for the container to be made.
    pub(crate) async fn send(&self, lxd: &Lxd, body: Value) -> Result<()> {
        const PATH: &str = "/1.0/instances";
        let answer = Answer(self.0.clone());
        answer.set(Sent::InFlight);
        let (tx, rx) = tokio::sync::oneshot::channel();
        let client = lxd.clone();
        berth_core::background::spawn("berth-lxd-create", move || {
            let runtime = match own_runtime() {
                Ok(runtime) => runtime,
                Err(e) => {
                    answer.set(Sent::Not); // nothing went to LXD
                    let why = format!("cannot start a runtime to ask LXD for a container: {e}");
                    let _ = tx.send(Err(error(ErrorKind::Io, Operation::Build, why)));
                    return;
                }
            };
            let started = runtime.block_on(async {
                let request = client.start(Operation::Build, Method::POST, PATH, &body);
                tokio::time::timeout(ANSWER_LIMIT, request).await
            });
            let answered = match started {
                Ok(started) => {
                    answer.set(Sent::Answered);
                    started.map(|(operation, _)| operation)
                }
                Err(_) => Err(error(
                    ErrorKind::EngineUnavailable,
                    Operation::Build,
                    format!(
                        "LXD did not answer the request creating a container within {ANSWER_LIMIT:?}"
                    ),
                )),
            };
            drop(answer); // cut off before the build hears of it, when LXD never answered
            let _ = tx.send(answered);
        });
        let operation = rx.await.map_err(|_| {
            error(
                ErrorKind::Io,
                Operation::Build,
                "cannot start a thread to ask LXD for a container".to_string(),
            )
        })??;
        lxd.wait(Operation::Build, PATH, &operation).await?;
        Ok(())
    }
}

/// A runtime for a thread of this module's own (the creation request, a removal, the last look): the
/// process's runtime may be gone by the time it runs.
fn own_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
}

/// Removes container `name` on a thread of its own (see the module doc), once `creation`'s request is answered.
pub(crate) fn remove_in_background(lxd: Lxd, name: String, creation: Creation) {
    let work = move || {
        let Ok(runtime) = own_runtime() else {
            eprintln!(
                "berth: cannot remove LXD container {name}: no runtime; the next build removes it"
            );
            return;
        };
        runtime.block_on(async {
            match tokio::time::timeout(LIMIT, remove(&lxd, &name, &creation)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("berth: removing the interrupted build's LXD container: {e}"),
                Err(_) => eprintln!(
                    "berth: LXD container {name} was still being made after {LIMIT:?}; the next build removes it"
                ),
            }
        });
    };
    berth_core::background::spawn("berth-lxd-cleanup", work);
}

/// Removes container `name` once `creation`'s request is answered and LXD's work on it has ended.
pub(crate) async fn remove(lxd: &Lxd, name: &str, creation: &Creation) -> Result<()> {
    let cut_off = loop {
        match creation.get() {
            Sent::InFlight => tokio::time::sleep(POLL).await,
            Sent::Not => return Ok(()),
            Sent::Answered => break false,
            Sent::CutOff => break true,
        }
    };
    settle(lxd, name).await?;
    crate::instance::delete(lxd, name).await?;
    if cut_off {
        tokio::time::sleep(IN_FLIGHT_GRACE).await;
        // a request that landed after the grace's start shows now as an operation or as the container
        settle(lxd, name).await?;
        crate::instance::delete(lxd, name).await?;
    }
    Ok(())
}

/// Waits until LXD runs no operation on container `name` (its creation, a start), which would refuse the
/// delete or make the container after it.
async fn settle(lxd: &Lxd, name: &str) -> Result<()> {
    settle_all(lxd, name, |instance| instance == name).await
}

/// Waits until LXD runs no operation on a container whose name `mine` accepts (`what` names them in the
/// message).
async fn settle_all(lxd: &Lxd, what: &str, mine: impl Fn(&str) -> bool) -> Result<()> {
    let mut said = false;
    while busy(lxd, &mine).await? {
        if !said {
            eprintln!(
                "berth: waiting for LXD to end its work on container {what} (making or starting it), to \
                 remove it"
            );
            said = true;
        }
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Whether a running LXD operation names a container that `mine` accepts among its resources.
async fn busy(lxd: &Lxd, mine: impl Fn(&str) -> bool) -> Result<bool> {
    let operations = lxd
        .call(
            Operation::Build,
            Method::GET,
            "/1.0/operations?recursion=1",
            None,
        )
        .await?;
    Ok(names_instance(&operations, mine))
}

/// Whether `operations` (LXD's `/1.0/operations?recursion=1`, grouped by status) has a running or pending task
/// (a creation, a start; LXD lists an operation as pending until the answer naming it is written) whose
/// resources include an instance that `mine` accepts. A command running in the container is a `websocket`
/// operation that lasts as long as the command: the forced stop ends it, so it is not waited for.
fn names_instance(operations: &Value, mine: impl Fn(&str) -> bool) -> bool {
    ["running", "pending"]
        .into_iter()
        .filter_map(|status| operations[status].as_array())
        .flatten()
        .filter(|op| op["class"] == "task")
        .filter_map(|op| op["resources"].as_object())
        .flat_map(|resources| resources.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        // a resource may carry a query (`?project=default`)
        .map(|r| r.split('?').next().unwrap_or(r))
        .filter_map(|r| {
            r.strip_prefix("/1.0/instances/")
                .or_else(|| r.strip_prefix("/1.0/containers/"))
        })
        .any(|instance| !instance.contains('/') && mine(instance))
}

/// The LXD servers this process reserved build containers on, and whether each is remote.
static SERVERS: Mutex<Vec<(Lxd, bool)>> = Mutex::new(Vec::new());
/// The build containers whose build holds them still (an `Instance` not dropped yet): the last look leaves those
/// to their build (in a program that runs builds while another ends, as a test binary does).
static HELD: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

/// Notes that this process makes build container `name` on `lxd`, held by its build until [`released`].
pub(crate) fn reserved(lxd: &Lxd, remote: bool, name: &str) {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(name.to_string());
    let mut servers = SERVERS.lock().unwrap_or_else(|p| p.into_inner());
    let server = lxd.client().name();
    if !servers
        .iter()
        .any(|(known, _)| known.client().name() == server)
    {
        servers.push((lxd.clone(), remote));
    }
}

/// Notes that build container `name`'s build has let it go (removed it, or handed it to a removal).
pub(crate) fn released(name: &str) {
    HELD.lock().unwrap_or_else(|p| p.into_inner()).remove(name);
}

fn held(name: &str) -> bool {
    HELD.lock()
        .unwrap_or_else(|p| p.into_inner())
        .contains(name)
}

/// Waits until every removal that a dropped build started has ended (each is bounded by [`LIMIT`]), then looks
/// once more on each server this process built on for containers named after it (`berth-<pid>-`) that no build
/// holds, and removes them: whatever path a stopped build took, nothing of this process stays. Call it before
/// the process exits, outside any runtime.
pub fn wait_for_cleanups() {
    berth_core::background::wait();
    let servers = std::mem::take(&mut *SERVERS.lock().unwrap_or_else(|p| p.into_inner()));
    if servers.is_empty() {
        return;
    }
    let Ok(runtime) = own_runtime() else {
        eprintln!("berth: cannot look for this run's LXD containers: no runtime; the next build removes any");
        return;
    };
    runtime.block_on(async {
        for (lxd, remote) in &servers {
            match tokio::time::timeout(LIMIT, last_look(lxd, *remote)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => eprintln!("berth: looking for this run's LXD containers: {e}"),
                Err(_) => eprintln!(
                    "berth: LXD was still busy with this run's containers after {LIMIT:?}; the next build removes them"
                ),
            }
        }
    });
}

/// Removes the containers on `lxd` named after this process (on a `remote` server, only those this machine
/// made), waiting for LXD's work on each first. A build's own removal has normally taken them all.
async fn last_look(lxd: &Lxd, remote: bool) -> Result<()> {
    let prefix = format!("{}{}-", crate::NAME_PREFIX, std::process::id());
    let mine = |name: &str| name.starts_with(&prefix) && !held(name);
    // a container being made may not be listed yet
    settle_all(lxd, &format!("{prefix}*"), mine).await?;
    let left = crate::instance::instance_names(lxd, mine).await?;
    for name in left {
        if remote && !crate::instance::made_here(lxd, &name).await {
            continue;
        }
        eprintln!("berth: removing LXD container {name}, which a stopped build of this run left");
        crate::instance::delete(lxd, &name).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn running_operations_on_the_container_count() {
        let ops = json!({
            "running": [
                {"class": "task", "resources": {"instances": ["/1.0/instances/berth-1-0-a?project=default"]}},
                {"class": "websocket", "resources": {"instances": ["/1.0/instances/berth-3-0-c"]}},
            ],
            "pending": [{"class": "task", "resources": {"instances": ["/1.0/instances/berth-4-0-d"]}}],
            "success": [{"class": "task", "resources": {"instances": ["/1.0/instances/berth-2-0-b"]}}],
        });
        let named = |name: &'static str| move |instance: &str| instance == name;
        assert!(
            names_instance(&ops, named("berth-4-0-d")),
            "a pending operation"
        );
        assert!(names_instance(&ops, named("berth-1-0-a")));
        assert!(
            !names_instance(&ops, named("berth-2-0-b")),
            "a finished operation"
        );
        assert!(
            !names_instance(&ops, named("berth-1-0")),
            "a prefix of another name"
        );
        assert!(!names_instance(&json!({}), named("berth-1-0-a")));
        // the last look at exit: any container of one process
        assert!(names_instance(&ops, |i: &str| i.starts_with("berth-4-")));
        assert!(
            !names_instance(&ops, |i: &str| i.starts_with("berth-2-")),
            "finished"
        );
        assert!(
            !names_instance(&ops, |i: &str| i.starts_with("berth-3-")),
            "a command"
        );
    }
}
