//! What berth processes that are gone left in containerd (`ContainerEngine::leftovers`), told by the owner
//! labels on berth's containers and leases (see [`crate::owner`]).
//!
//! A container or lease whose owner no longer runs is a leftover: its task is killed and deleted, the container
//! deleted, the lease deleted synchronously so containerd's collector drops the active snapshots and content
//! that only it held. A running berth's (this one or another) are never touched. Objects with berth's id prefix
//! but no owner labels were made by a berth before the labels existed: they are listed with an unknown owner
//! and left alone, since a running older berth may hold them (their lease expires after a day).

use std::time::{SystemTime, UNIX_EPOCH};

use berth_core::engine::Leftover;
use berth_core::Result;

use crate::convert::Labeled;
use crate::errors::Op;
use crate::owner::Owner;
use crate::{ContainerdEngine, ID_PREFIX};

/// Whose a listed container or lease is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// A berth process that still runs.
    Running,
    /// A berth process that is gone.
    Gone(Owner),
    /// No owner labels.
    Unknown,
}

fn whose(object: &Labeled) -> Whose {
    match Owner::of(&object.labels) {
        Some(owner) if owner.alive() => Whose::Running,
        Some(owner) => Whose::Gone(owner),
        None => Whose::Unknown,
    }
}

/// How long ago containerd made it.
fn age(object: &Labeled) -> Option<std::time::Duration> {
    let created = u64::try_from(object.created?).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(std::time::Duration::from_secs(now.checked_sub(created)?))
}

/// How one reads in a message.
fn describe(kind: &str, object: &Labeled, whose: Whose, namespace: &str) -> Leftover {
    let removed_by_next_run = matches!(whose, Whose::Gone(_));
    let what = match whose {
        Whose::Gone(owner) => format!(
            "containerd {kind} {} of berth process {} (gone)",
            object.id, owner.pid
        ),
        _ => format!(
            "containerd {kind} {} of an unknown berth process (made before berth labelled its owner; not \
             removed: when no berth runs, `ctr -n {namespace} {} rm {}`)",
            object.id,
            if kind == "lease" { "leases" } else { "containers" },
            object.id
        ),
    };
    Leftover {
        what,
        age: age(object),
        removed_by_next_run,
    }
}

/// berth's containers and leases in the engine's namespace, with whose each is; running berths' left out.
async fn listed(engine: &ContainerdEngine) -> Result<Vec<(&'static str, Labeled, Whose)>> {
    let d = &engine.daemon;
    let containers = d.containers_labeled(ID_PREFIX, Op::Inspect).await?;
    let leases = d.leases_labeled(ID_PREFIX, Op::Inspect).await?;
    Ok(containers
        .into_iter()
        .map(|c| ("container", c))
        .chain(leases.into_iter().map(|l| ("lease", l)))
        .map(|(kind, o)| {
            let w = whose(&o);
            (kind, o, w)
        })
        .filter(|(_, _, w)| *w != Whose::Running)
        .collect())
}

/// What gone berth processes left, and berth's objects whose owner is unknown.
pub(crate) async fn leftovers(engine: &ContainerdEngine) -> Result<Vec<Leftover>> {
    Ok(listed(engine)
        .await?
        .iter()
        .map(|(kind, o, w)| describe(kind, o, *w, engine.namespace()))
        .collect())
}

/// Removes what gone berth processes left (tasks, containers, then leases); returns what it removed.
pub(crate) async fn remove_leftovers(engine: &ContainerdEngine) -> Result<Vec<Leftover>> {
    let d = &engine.daemon;
    let gone: Vec<_> = listed(engine)
        .await?
        .into_iter()
        .filter(|(_, _, w)| matches!(w, Whose::Gone(_)))
        .collect();
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    let tasks = d.task_ids(ID_PREFIX, Op::Remove).await?;
    let mut removed = Vec::new();
    // containers first: a lease deleted while a container still uses its snapshot would leave that snapshot
    for (kind, object, whose) in gone.iter().filter(|(k, _, _)| *k == "container") {
        if tasks.contains(&object.id) {
            crate::cleanup::stop_task(d, &object.id).await?;
        }
        d.delete_container(&object.id, Op::Remove).await?;
        removed.push(describe(kind, object, *whose, engine.namespace()));
    }
    for (kind, object, whose) in gone.iter().filter(|(k, _, _)| *k == "lease") {
        d.delete_lease_sync(&object.id, true, Op::Remove).await?;
        removed.push(describe(kind, object, *whose, engine.namespace()));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn object(labels: HashMap<String, String>) -> Labeled {
        Labeled {
            id: "berth-run-0123".into(),
            labels,
            created: None,
        }
    }

    #[test]
    fn a_live_owner_keeps_its_objects_and_a_gone_or_unknown_one_is_told() {
        let mut labels = HashMap::new();
        let me = Owner::this();
        me.label(&mut labels);
        assert_eq!(whose(&object(labels)), Whose::Running);
        let mut labels = HashMap::new();
        let gone = Owner {
            started: me.started + 1,
            ..me
        };
        gone.label(&mut labels);
        let o = object(labels);
        assert_eq!(whose(&o), Whose::Gone(gone));
        let said = describe("container", &o, whose(&o), "berth").what;
        assert!(
            said.contains(&format!("berth process {}", me.pid)),
            "{said}"
        );
        let unknown = object(HashMap::new());
        assert_eq!(whose(&unknown), Whose::Unknown);
        let said = describe("lease", &unknown, Whose::Unknown, "berth").what;
        assert!(
            said.contains("unknown") && said.contains("ctr -n berth leases rm"),
            "{said}"
        );
    }
}
