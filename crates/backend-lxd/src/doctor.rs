//! LXD's `berth doctor` checks, for a server that answers: whether it is initialised, that is, has a storage
//! pool and a root disk in the `default` profile that berth's build containers are made from (a fresh
//! `apt install lxd` answers on its socket but cannot make a container until `lxd init` ran); and for a remote
//! server, whether the two certificates `lxc remote add` set up still hold: the server shows the one lxc
//! accepted, and it trusts lxc's client certificate.

use berth_core::doctor::{Finding, ProviderSection, Section};
use berth_core::Operation;
use http::Method;
use serde_json::{json, Value};

use crate::client::Client;
use crate::errors::{untrusted_client_hint, untrusted_server_hint};
use crate::remote::Remote;
use crate::LxdEngine;

/// What the checks look at, for `berth doctor --help`.
pub const HELP: &str =
    "LXD, when its server answers: whether the server is initialised (a storage pool, and a \
root disk in the default profile that berth's build containers use); `lxd init` sets up both. With a remote \
(BERTH_LXD_REMOTE, engine.lxd.remote): whether the server shows the certificate `lxc remote add` accepted and \
trusts lxc's client certificate, with the fix for each.";

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

/// How a remote server and this client stand with each other's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RemoteTrust {
    /// The server shows the certificate lxc accepted and trusts lxc's client certificate.
    Trusted,
    /// The server shows the accepted certificate but does not trust this client's.
    ClientUntrusted,
    /// The server shows another certificate than the one lxc accepted.
    ServerChanged,
}

/// The finding for `remote` standing as `trust`.
pub fn remote_finding(remote: &Remote, trust: RemoteTrust) -> Finding {
    const CHECK: &str = "lxd remote certificate";
    match trust {
        RemoteTrust::Trusted => Finding::ok(
            CHECK,
            format!(
                "{} shows the certificate lxc accepted and trusts {}",
                remote.url(),
                remote.client_cert().display()
            ),
        ),
        RemoteTrust::ClientUntrusted => Finding::problem(
            CHECK,
            format!(
                "remote certificate not trusted: LXD at {} does not trust this client's certificate ({})",
                remote.url(),
                remote.client_cert().display()
            ),
            untrusted_client_hint(remote),
        ),
        RemoteTrust::ServerChanged => Finding::problem(
            CHECK,
            format!(
                "LXD at {} shows another certificate than the one lxc accepted for remote {}",
                remote.url(),
                remote.name
            ),
            untrusted_server_hint(remote),
        ),
    }
}

/// The remote's section: its certificates, checked apart from connecting (which reports only the first thing
/// wrong); a problem with lxc's files is a finding too. `None` when the server does not answer at all (the
/// engines section says why).
pub(crate) async fn remote_section(remote: &Remote) -> Option<ProviderSection> {
    let finding = match Client::remote(remote.clone()) {
        Err(e) => Finding::problem(
            "lxd remote certificate",
            format!("lxc's certificates for remote {}: {e}", remote.name),
            format!(
                "add the remote again as this user: `lxc remote add {} {}`",
                remote.name,
                remote.url()
            ),
        ),
        Ok(client) => remote_finding(remote, remote_trust(&client).await?),
    };
    Some(ProviderSection {
        key: "lxd_remote",
        json: json!({
            "remote": remote.name,
            "address": remote.url(),
            "findings": berth_core::doctor::findings_json(std::slice::from_ref(&finding)),
        }),
        section: Section {
            title: format!("lxd remote {} ({})", remote.name, remote.url()),
            findings: vec![finding],
        },
    })
}

/// How the remote `options` name stands with this client; `None` when they name none, lxc's files for it
/// cannot be read, or the server does not answer.
pub async fn remote_trust_of(options: &crate::LxdOptions) -> Option<RemoteTrust> {
    let remote = options.remote().ok()??;
    remote_trust(&Client::remote(remote).ok()?).await
}

/// How `client`'s remote server stands; `None` when it does not answer.
async fn remote_trust(client: &Client) -> Option<RemoteTrust> {
    // the handshake alone tells whether the server shows the accepted certificate: LXD takes any client
    // certificate at this point and says whether it trusts it in its answers
    if let Err(e) = client.connect().await {
        return (berth_http::transport::transport_of(&e) == berth_http::Transport::Tls)
            .then_some(RemoteTrust::ServerChanged);
    }
    let lxd = crate::api::Lxd::new(client.clone());
    let server = lxd
        .call(Operation::Connect, Method::GET, "/1.0", None)
        .await
        .ok()?;
    Some(if server["auth"] == "trusted" {
        RemoteTrust::Trusted
    } else {
        RemoteTrust::ClientUntrusted
    })
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
    fn each_remote_certificate_problem_has_its_own_fix() {
        let remote = Remote {
            name: "build".into(),
            addr: "10.0.0.2:8443".into(),
            conf_dir: "/root/.config/lxc".into(),
        };
        assert_eq!(
            remote_finding(&remote, RemoteTrust::Trusted).status,
            Status::Ok
        );
        let client = remote_finding(&remote, RemoteTrust::ClientUntrusted);
        assert_eq!(client.status, Status::Problem);
        assert!(client.message.contains("not trusted"), "{}", client.message);
        let fix = client.fix.unwrap_or_default();
        assert!(
            fix.contains("lxc config trust add") && fix.contains("/root/.config/lxc/client.crt"),
            "{fix}"
        );
        let server = remote_finding(&remote, RemoteTrust::ServerChanged);
        let fix = server.fix.unwrap_or_default();
        assert!(
            fix.contains("lxc remote remove build") && fix.contains("servercerts/build.crt"),
            "{fix}"
        );
    }

    #[test]
    fn the_root_pool_is_read_from_the_profile() {
        let profile = json!({"devices": {"eth0": {"type": "nic"}, "root": {"type": "disk", "path": "/", "pool": "p"}}});
        assert_eq!(root_pool(&profile).as_deref(), Some("p"));
        assert_eq!(root_pool(&json!({"devices": {}})), None);
    }
}
