//! Which berth process made a container or lease in containerd, so what a killed berth left can be told from
//! what a running one holds.
//!
//! berth's ids here (`berth-<what>-<random>`) do not name the process, so every container and lease berth
//! creates carries two labels: the pid of the berth process and that process's start time (clock ticks after
//! boot, field 22 of `/proc/PID/stat`), so a reused pid is not taken for the owner. An object is a leftover
//! exactly when its owner no longer runs; one without the labels (made by a berth before they existed) has an
//! unknown owner and is only reported. The active snapshots of a build hang off its lease and containers:
//! deleting those lets containerd's collector drop them.
//!
//! Ingests (a blob being written into the content store) and a build's folder in berth's state folder carry no
//! labels: their names say the owner instead, `berth-<what>-<pid>-<start>-<random>` ([`Owner::name`]).

use std::collections::HashMap;

/// The label with the owning berth process's pid.
pub(crate) const PID: &str = "berth.owner.pid";
/// The label with its start time (clock ticks after boot).
pub(crate) const STARTED: &str = "berth.owner.started";

/// The berth process that made an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Owner {
    /// Its pid.
    pub(crate) pid: u32,
    /// Its start time, clock ticks after boot.
    pub(crate) started: u64,
}

impl Owner {
    /// This process (start time 0 when `/proc` cannot tell, which no live process matches later).
    pub(crate) fn this() -> Owner {
        let pid = std::process::id();
        Owner {
            pid,
            started: berth_core::process::start_time(pid).unwrap_or(0),
        }
    }

    /// The owner `labels` name, if they name one.
    pub(crate) fn of(labels: &HashMap<String, String>) -> Option<Owner> {
        Some(Owner {
            pid: labels.get(PID)?.parse().ok()?,
            started: labels.get(STARTED)?.parse().ok()?,
        })
    }

    /// Adds the labels naming this owner to `labels`.
    pub(crate) fn label(&self, labels: &mut HashMap<String, String>) {
        labels.insert(PID.to_string(), self.pid.to_string());
        labels.insert(STARTED.to_string(), self.started.to_string());
    }

    /// A fresh name for something of `what` this owner makes that has no labels (an ingest ref, a build
    /// folder): `berth-<what>-<pid>-<start>-<random>`.
    pub(crate) fn name(&self, what: &str) -> String {
        format!(
            "{}{what}-{}-{}-{:016x}",
            crate::ID_PREFIX,
            self.pid,
            self.started,
            fastrand::u64(..)
        )
    }

    /// The owner a name made by [`Owner::name`] for `what` says; `None` for any other name (one made before
    /// names carried the owner: `berth-<what>-<random>`).
    pub(crate) fn of_name(name: &str, what: &str) -> Option<Owner> {
        let rest = name.strip_prefix(crate::ID_PREFIX)?.strip_prefix(what)?;
        let mut parts = rest.strip_prefix('-')?.split('-');
        let owner = Owner {
            pid: parts.next()?.parse().ok()?,
            started: parts.next()?.parse().ok()?,
        };
        let random = parts.next()?;
        (!random.is_empty() && parts.next().is_none()).then_some(owner)
    }

    /// Whether the process still runs (the same pid, started at the same time).
    pub(crate) fn alive(&self) -> bool {
        berth_core::process::start_time(self.pid) == Some(self.started)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_and_a_reused_pid_is_not() {
        let me = Owner::this();
        assert!(me.alive());
        let mut labels = HashMap::new();
        me.label(&mut labels);
        assert_eq!(Owner::of(&labels), Some(me));
        let reused = Owner {
            started: me.started + 1,
            ..me
        };
        assert!(!reused.alive());
    }

    #[test]
    fn a_name_says_its_owner_and_an_older_name_says_none() {
        let me = Owner::this();
        let name = me.name("ingest");
        assert!(name.starts_with(&format!("berth-ingest-{}-{}-", me.pid, me.started)));
        assert_eq!(Owner::of_name(&name, "ingest"), Some(me));
        assert_eq!(Owner::of_name(&name, "build"), None);
        // the names berth gave before: no owner in them
        assert_eq!(
            Owner::of_name("berth-ingest-0123456789abcdef", "ingest"),
            None
        );
        assert_eq!(Owner::of_name("berth-ingest-7-8", "ingest"), None);
        assert_eq!(Owner::of_name("berth-ingest-7-8-ab-cd", "ingest"), None);
    }

    #[test]
    fn objects_without_both_labels_have_no_owner() {
        assert_eq!(Owner::of(&HashMap::new()), None);
        let pid_only = HashMap::from([(PID.to_string(), "7".to_string())]);
        assert_eq!(Owner::of(&pid_only), None);
    }
}
