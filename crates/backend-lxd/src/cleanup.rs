//! Removing the container of a build that was dropped (Ctrl-C, SIGTERM, an error path that returned early), so
//! that berth ends leaving nothing in LXD.
//!
//! Two things made a task spawned on berth's runtime not enough: berth drops that runtime right after an
//! interrupted build, which cancels the task before LXD answered; and the request creating the container may
//! still be running in LXD (an operation of its own there, which goes on when berth hangs up), so a delete sent
//! at once finds nothing and the container appears a moment later. So, as containerd's cleanup guard does, the
//! removal runs on a thread of its own (`berth_core::background`) with its own runtime (LXD's client opens a connection per request, so it
//! works on any runtime), waits for LXD's operations on the container to end, deletes it, and looks once more
//! after a grace for a request that was still on its way. A front end joins these threads with
//! [`wait_for_cleanups`] before exiting (the provider's `wait_for_background_work`).

use std::time::Duration;

use berth_core::{Operation, Result};
use http::Method;
use serde_json::Value;

use crate::api::Lxd;

/// Upper bound for one background removal; a container still there after it is the next build's to remove
/// (its berth's pid is gone by then).
const LIMIT: Duration = Duration::from_secs(60);
/// How long a request the dropped build had sent may take to reach LXD.
const IN_FLIGHT_GRACE: Duration = Duration::from_millis(500);
/// How often LXD's running operations are looked at.
const POLL: Duration = Duration::from_millis(200);

/// Removes container `name` on a thread of its own (see the module doc); `created` says whether its creation
/// was asked for (else only a request on its way could make it, and one look after the grace is enough).
pub(crate) fn remove_in_background(lxd: Lxd, name: String, created: bool) {
    let work = move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let Ok(runtime) = runtime else {
            eprintln!(
                "berth: cannot remove LXD container {name}: no runtime; the next build removes it"
            );
            return;
        };
        runtime.block_on(async {
            match tokio::time::timeout(LIMIT, remove(&lxd, &name, created)).await {
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

async fn remove(lxd: &Lxd, name: &str, created: bool) -> Result<()> {
    if created {
        settle(lxd, name).await?;
        crate::instance::delete(lxd, name).await?;
    }
    tokio::time::sleep(IN_FLIGHT_GRACE).await;
    // a request that landed after the grace's start shows now as an operation or as the container
    settle(lxd, name).await?;
    crate::instance::delete(lxd, name).await
}

/// Waits until LXD runs no operation on container `name` (its creation, a start), which would refuse the
/// delete or make the container after it.
async fn settle(lxd: &Lxd, name: &str) -> Result<()> {
    while busy(lxd, name).await? {
        tokio::time::sleep(POLL).await;
    }
    Ok(())
}

/// Whether a running LXD operation names container `name` among its resources.
async fn busy(lxd: &Lxd, name: &str) -> Result<bool> {
    let operations = lxd
        .call(
            Operation::Build,
            Method::GET,
            "/1.0/operations?recursion=1",
            None,
        )
        .await?;
    Ok(names_instance(&operations, name))
}

/// Whether `operations` (LXD's `/1.0/operations?recursion=1`, grouped by status) has a running task (a
/// creation, a start) whose resources include instance `name`. A command running in the container is a
/// `websocket` operation that lasts as long as the command: the forced stop ends it, so it is not waited for.
fn names_instance(operations: &Value, name: &str) -> bool {
    let target = format!("/1.0/instances/{name}");
    let legacy = format!("/1.0/containers/{name}");
    operations["running"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|op| op["class"] == "task")
        .filter_map(|op| op["resources"].as_object())
        .flat_map(|resources| resources.values())
        .filter_map(Value::as_array)
        .flatten()
        .filter_map(Value::as_str)
        // a resource may carry a query (`?project=default`)
        .map(|r| r.split('?').next().unwrap_or(r))
        .any(|r| r == target || r == legacy)
}

/// Waits until every removal that a dropped build started has ended (each is bounded by [`LIMIT`]). Call it
/// before the process exits, outside any runtime.
pub fn wait_for_cleanups() {
    berth_core::background::wait();
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
            "success": [{"class": "task", "resources": {"instances": ["/1.0/instances/berth-2-0-b"]}}],
        });
        assert!(names_instance(&ops, "berth-1-0-a"));
        assert!(!names_instance(&ops, "berth-2-0-b"), "a finished operation");
        assert!(
            !names_instance(&ops, "berth-1-0"),
            "a prefix of another name"
        );
        assert!(!names_instance(&json!({}), "berth-1-0-a"));
    }
}
