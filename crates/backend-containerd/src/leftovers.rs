//! What berth processes that are gone left in containerd and in berth's state folder
//! (`ContainerEngine::leftovers`), told by the owner (see [`crate::owner`]): the labels on berth's containers
//! and leases, the names of its ingests (unfinished blob writes) and of its build folders ([`crate::folders`]).
//!
//! A thing whose owner no longer runs is a leftover: its task is killed and deleted, the container deleted, the
//! ingest aborted, the lease deleted synchronously so containerd's collector drops the active snapshots and
//! content that only it held, and the build folder removed. A running berth's (this one or another) are never
//! touched. berth's things whose owner is unknown were made by a berth before labels or names said it: they are
//! listed and left alone, since a running older berth may hold them.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_core::engine::Leftover;
use berth_core::Result;

use crate::convert::Labeled;
use crate::errors::{io_error, Op};
use crate::owner::Owner;
use crate::{ContainerdEngine, ID_PREFIX};

/// Whose a listed thing is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Whose {
    /// A berth process that still runs.
    Running,
    /// A berth process that is gone.
    Gone(Owner),
    /// Neither labels nor name say.
    Unknown,
}

fn whose(owner: Option<Owner>) -> Whose {
    match owner {
        Some(owner) if owner.alive() => Whose::Running,
        Some(owner) => Whose::Gone(owner),
        None => Whose::Unknown,
    }
}

/// What a listed thing is, in the order the removal goes (a lease deleted while a container still uses its
/// snapshot would leave that snapshot; a FIFO in a build folder is held by the task until it is gone).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    Container,
    Ingest,
    Lease,
    Folder,
}

/// One thing berth made, with whose it is.
#[derive(Debug, Clone)]
struct Found {
    kind: Kind,
    /// Its id, ref, or (a folder) path.
    id: String,
    age: Option<Duration>,
    whose: Whose,
}

/// How long ago containerd made it.
fn age(object: &Labeled) -> Option<Duration> {
    let created = u64::try_from(object.created?).ok()?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?.as_secs();
    Some(Duration::from_secs(now.checked_sub(created)?))
}

/// How one reads in a message.
fn describe(found: &Found, namespace: &str) -> Leftover {
    let id = &found.id;
    let what = match (found.kind, found.whose) {
        (Kind::Folder, Whose::Gone(owner)) => {
            format!("build folder {id} of berth process {} (gone)", owner.pid)
        }
        (Kind::Ingest, Whose::Gone(owner)) => format!(
            "containerd ingest {id} (an unfinished blob write) of berth process {} (gone)",
            owner.pid
        ),
        (kind, Whose::Gone(owner)) => format!(
            "containerd {} {id} of berth process {} (gone)",
            if kind == Kind::Lease { "lease" } else { "container" },
            owner.pid
        ),
        (Kind::Folder, _) => format!(
            "build folder {id} of an unknown berth process (made before berth named build folders for their \
             process; not removed: when no berth runs, `rm -r {id}`)"
        ),
        (Kind::Ingest, _) => format!(
            "containerd ingest {id} (an unfinished blob write) of an unknown berth process (made before berth \
             named ingests for their process; not removed: containerd drops it with the lease that holds it, \
             which expires a day after it was made)"
        ),
        (kind, _) => {
            let (noun, ctr) = if kind == Kind::Lease {
                ("lease", "leases")
            } else {
                ("container", "containers")
            };
            format!(
                "containerd {noun} {id} of an unknown berth process (made before berth labelled its owner; not \
                 removed: when no berth runs, `ctr -n {namespace} {ctr} rm {id}`)"
            )
        }
    };
    Leftover {
        what,
        age: found.age,
        removed_by_next_run: matches!(found.whose, Whose::Gone(_)),
    }
}

/// berth's containers, ingests, leases and build folders, with whose each is; running berths' left out.
async fn listed(engine: &ContainerdEngine) -> Result<Vec<Found>> {
    let d = &engine.daemon;
    let labelled = |kind, object: Labeled| Found {
        kind,
        age: age(&object),
        whose: whose(Owner::of(&object.labels)),
        id: object.id,
    };
    let mut found: Vec<Found> = d
        .containers_labeled(ID_PREFIX, Op::Inspect)
        .await?
        .into_iter()
        .map(|c| labelled(Kind::Container, c))
        .collect();
    for ingest in d.ingests(ID_PREFIX, Op::Inspect).await? {
        let owner = Owner::of_name(&ingest.id, "ingest");
        found.push(Found {
            whose: whose(owner),
            ..labelled(Kind::Ingest, ingest)
        });
    }
    found.extend(
        d.leases_labeled(ID_PREFIX, Op::Inspect)
            .await?
            .into_iter()
            .map(|l| labelled(Kind::Lease, l)),
    );
    found.extend(
        crate::folders::build_folders(&engine.options.state_dir)
            .into_iter()
            .chain(crate::folders::older_folders(&engine.options.state_dir))
            .map(|f| Found {
                kind: Kind::Folder,
                age: crate::folders::age(&f.path),
                whose: whose(f.owner),
                id: f.path.display().to_string(),
            }),
    );
    found.retain(|f| f.whose != Whose::Running);
    Ok(found)
}

/// What gone berth processes left, and berth's things whose owner is unknown.
pub(crate) async fn leftovers(engine: &ContainerdEngine) -> Result<Vec<Leftover>> {
    Ok(listed(engine)
        .await?
        .iter()
        .map(|f| describe(f, engine.namespace()))
        .collect())
}

/// Removes what gone berth processes left (tasks and containers, ingests, leases, then build folders); returns
/// what it removed.
pub(crate) async fn remove_leftovers(engine: &ContainerdEngine) -> Result<Vec<Leftover>> {
    let d = &engine.daemon;
    let mut gone: Vec<Found> = listed(engine)
        .await?
        .into_iter()
        .filter(|f| matches!(f.whose, Whose::Gone(_)))
        .collect();
    if gone.is_empty() {
        return Ok(Vec::new());
    }
    gone.sort_by_key(|f| f.kind);
    let tasks = d.task_ids(ID_PREFIX, Op::Remove).await?;
    let mut removed = Vec::new();
    for found in &gone {
        match found.kind {
            Kind::Container => {
                if tasks.contains(&found.id) {
                    crate::cleanup::stop_task(d, &found.id).await?;
                }
                d.delete_container(&found.id, Op::Remove).await?;
            }
            Kind::Ingest => d.abort_ingest(&found.id, Op::Remove).await?,
            Kind::Lease => d.delete_lease_sync(&found.id, true, Op::Remove).await?,
            Kind::Folder => crate::folders::remove(std::path::Path::new(&found.id))
                .map_err(|e| io_error(Op::Remove, &found.id, e))?,
        }
        removed.push(describe(found, engine.namespace()));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn found(kind: Kind, id: &str, owner: Option<Owner>) -> Found {
        Found {
            kind,
            id: id.into(),
            age: None,
            whose: whose(owner),
        }
    }

    #[test]
    fn a_live_owner_keeps_its_things_and_a_gone_or_unknown_one_is_told() {
        let mut labels = HashMap::new();
        let me = Owner::this();
        me.label(&mut labels);
        assert_eq!(whose(Owner::of(&labels)), Whose::Running);
        let gone = Owner {
            started: me.started + 1,
            ..me
        };
        let container = found(Kind::Container, "berth-step-0123", Some(gone));
        assert_eq!(container.whose, Whose::Gone(gone));
        let said = describe(&container, "berth");
        assert!(said.removed_by_next_run);
        assert!(
            said.what.contains(&format!("berth process {}", me.pid)),
            "{}",
            said.what
        );
        let unknown = describe(&found(Kind::Lease, "berth-build-0123", None), "berth");
        assert!(!unknown.removed_by_next_run);
        assert!(
            unknown.what.contains("unknown") && unknown.what.contains("ctr -n berth leases rm"),
            "{}",
            unknown.what
        );
    }

    #[test]
    fn ingests_and_build_folders_are_told_by_the_owner_their_name_says() {
        let me = Owner::this();
        let gone = Owner {
            started: me.started + 1,
            ..me
        };
        // this process's ingest is a running berth's: never listed, never aborted
        let mine = me.name("ingest");
        assert_eq!(whose(Owner::of_name(&mine, "ingest")), Whose::Running);
        let theirs = gone.name("ingest");
        let said = describe(
            &found(Kind::Ingest, &theirs, Owner::of_name(&theirs, "ingest")),
            "berth",
        );
        assert!(said.removed_by_next_run, "{}", said.what);
        assert!(said.what.contains("ingest") && said.what.contains(&theirs));
        let older = describe(
            &found(Kind::Ingest, "berth-ingest-0123456789abcdef", None),
            "berth",
        );
        assert!(!older.removed_by_next_run && older.what.contains("unknown"));
        let folder = describe(&found(Kind::Folder, "/s/tmp/berth-copy-1", None), "berth");
        assert!(!folder.removed_by_next_run);
        assert!(
            folder.what.contains("rm -r /s/tmp/berth-copy-1"),
            "{}",
            folder.what
        );
    }
}
