//! LXD's `berth doctor` checks, for a server whose socket answers: whether it is initialised, that is, has a
//! storage pool and a root disk in the `default` profile that berth's build containers are made from. A fresh
//! `apt install lxd` answers on its socket but cannot make a container until `lxd init` ran.

use berth_core::doctor::{Finding, ProviderSection, Section};
use berth_core::Operation;
use http::Method;
use serde_json::{json, Value};

use crate::LxdEngine;

/// What the checks look at, for `berth doctor --help`.
pub const HELP: &str =
    "LXD, when its socket answers: whether the server is initialised (a storage pool, and a \
root disk in the default profile that berth's build containers use); `lxd init` sets up both.";

/// The fix for a server nobody initialised.
const INIT: &str =
    "initialise LXD: `lxd init --auto --storage-backend dir` (or `lxd init` to choose)";

/// What an initialised server shows: its storage pools' names, and the pool of the `default` profile's root
/// disk (`None` when the profile has no disk at `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFacts {
    /// The storage pools' names.
    pub pools: Vec<String>,
    /// The pool the `default` profile's root disk is on.
    pub root_pool: Option<String>,
}

/// The findings for `facts`.
pub fn findings(facts: &ServerFacts) -> Vec<Finding> {
    let pools = if facts.pools.is_empty() {
        Finding::problem(
            "lxd storage pool",
            "LXD has no storage pool: it cannot make a container",
            INIT,
        )
    } else {
        Finding::ok("lxd storage pool", facts.pools.join(", "))
    };
    let root = match &facts.root_pool {
        Some(pool) if facts.pools.contains(pool) => Finding::ok(
            "lxd default profile",
            format!("root disk on pool {pool}"),
        ),
        Some(pool) => Finding::problem(
            "lxd default profile",
            format!("the default profile's root disk names pool {pool}, which does not exist"),
            format!("point it at an existing pool: `lxc profile device set default root pool POOL` ({INIT})"),
        ),
        None => Finding::problem(
            "lxd default profile",
            "the default profile has no root disk, so berth's build containers would have no root folder",
            "`lxc profile device add default root disk path=/ pool=POOL`, or initialise LXD: `lxd init --auto \
             --storage-backend dir`",
        ),
    };
    vec![pools, root]
}

/// The section for a server that answers; `None` when it does not (the engines section says why).
pub(crate) async fn section(engine: &LxdEngine) -> Option<ProviderSection> {
    let facts = server_facts(engine).await.ok()?;
    let findings = findings(&facts);
    Some(ProviderSection {
        key: "lxd",
        json: json!({
            "pools": facts.pools,
            "root_pool": facts.root_pool,
            "findings": berth_core::doctor::findings_json(&findings),
        }),
        section: Section {
            title: format!("lxd ({})", engine.endpoint_name()),
            findings,
        },
    })
}

async fn server_facts(engine: &LxdEngine) -> berth_core::Result<ServerFacts> {
    let op = Operation::Connect;
    let pools = engine
        .lxd
        .call(op, Method::GET, "/1.0/storage-pools", None)
        .await?;
    let profile = engine
        .lxd
        .call(op, Method::GET, "/1.0/profiles/default", None)
        .await?;
    Ok(ServerFacts {
        pools: pools
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|url| url.rsplit('/').next().unwrap_or(url).to_string())
            .collect(),
        root_pool: root_pool(&profile),
    })
}

/// The pool of a profile's disk device at `/`.
pub(crate) fn root_pool(profile: &Value) -> Option<String> {
    profile["devices"]
        .as_object()?
        .values()
        .find(|d| d["type"] == "disk" && d["path"] == "/")
        .and_then(|d| d["pool"].as_str())
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use berth_core::doctor::Status;

    use super::*;

    fn statuses(facts: &ServerFacts) -> Vec<Status> {
        findings(facts).iter().map(|f| f.status).collect()
    }

    #[test]
    fn an_initialised_server_is_ok() {
        let facts = ServerFacts {
            pools: vec!["default".into()],
            root_pool: Some("default".into()),
        };
        assert_eq!(statuses(&facts), [Status::Ok, Status::Ok]);
    }

    #[test]
    fn a_fresh_install_says_to_run_lxd_init() {
        let facts = ServerFacts {
            pools: vec![],
            root_pool: None,
        };
        let found = findings(&facts);
        assert!(found.iter().all(|f| f.status == Status::Problem));
        assert!(found[0]
            .fix
            .as_deref()
            .unwrap_or_default()
            .contains("lxd init"));
    }

    #[test]
    fn a_root_disk_on_a_missing_pool_is_named() {
        let facts = ServerFacts {
            pools: vec!["fast".into()],
            root_pool: Some("default".into()),
        };
        let found = findings(&facts);
        assert_eq!(found[1].status, Status::Problem);
        assert!(found[1].message.contains("default"), "{}", found[1].message);
    }

    #[test]
    fn the_root_pool_is_read_from_the_profile() {
        let profile = json!({"devices": {"eth0": {"type": "nic"}, "root": {"type": "disk", "path": "/", "pool": "p"}}});
        assert_eq!(root_pool(&profile).as_deref(), Some("p"));
        assert_eq!(root_pool(&json!({"devices": {}})), None);
    }
}
