//! Podman's `berth doctor` checks: whether the user who runs berth can use rootless Podman (subordinate id
//! ranges, the setuid id mappers, `podman`, a runtime folder of the user's own, the user's service answering in
//! it, and buildah's cache folder). [`rootless::check`] is pure over [`rootless::RootlessFacts`]; [`section`]
//! gathers the facts from the machine and asks the user's service.

pub mod packages;
pub mod rootless;
pub mod subids;

use std::path::{Path, PathBuf};

use berth_core::doctor::accounts::{Accounts, Identity};
use berth_core::doctor::machine::{self, FileKind, PathState};
use berth_core::doctor::{findings_json, Finding, ProviderSection, Section};
use serde_json::{json, Value};

use crate::endpoint::XDG_RUNTIME_DIR;
use crate::{PodmanEngine, PodmanOptions};
use berth_core::engine::ContainerEngine as _;
use rootless::{RootlessFacts, ServiceAnswer, SUBGID, SUBUID};
use subids::SubIdEntry;

/// What the checks look at, for `berth doctor --help`.
pub const HELP: &str = "Rootless Podman, for a user other than root: a range of 65536 ids in /etc/subuid and /etc/subgid, \
newuidmap and newgidmap setuid root, podman on PATH, XDG_RUNTIME_DIR set to a folder of the user's own, and the user's \
service answering on $XDG_RUNTIME_DIR/podman/podman.sock. Skipped, and said so, for root.";

/// The rootless Podman section for `user`, skipped for root (whose Podman is rootful), with its JSON
/// (`{"skipped", "user", "uid", "subuid", "subgid", "checks"}`).
pub async fn section(user: &Identity, accounts: &Accounts) -> ProviderSection {
    let title = format!("rootless podman (user {}, uid {})", user.name, user.uid);
    if user.is_root() {
        let why = "berth runs as root, whose Podman is rootful; run `berth doctor` as the user who builds to check theirs";
        let json =
            json!({"skipped": "running as root", "user": user.name, "uid": user.uid, "checks": []});
        let findings = vec![Finding::skipped("rootless", why)];
        return ProviderSection {
            key: "rootless",
            section: Section { title, findings },
            json,
        };
    }
    let facts = rootless_facts(user.clone()).await;
    let checked = rootless::check(&facts, accounts);
    let ranges = |entries: &[SubIdEntry]| -> Value {
        entries
            .iter()
            .map(|e| json!({"start": e.start, "count": e.count}))
            .collect()
    };
    let json = json!({
        "skipped": null, "user": user.name, "uid": user.uid,
        "subuid": ranges(&checked.subuid), "subgid": ranges(&checked.subgid),
        "checks": findings_json(&checked.findings),
    });
    ProviderSection {
        key: "rootless",
        section: Section {
            title,
            findings: checked.findings,
        },
        json,
    }
}

/// Everything the rootless checks look at, for `user`: files, programs on `PATH`, the runtime folder, and the
/// user's Podman service (asked only when the runtime folder is usable).
async fn rootless_facts(user: Identity) -> RootlessFacts {
    let runtime_dir = machine::env(XDG_RUNTIME_DIR).map(|dir| {
        let state = machine::path_state(Path::new(&dir));
        (PathBuf::from(dir), state)
    });
    let mut cache_problem = None;
    let service = match &runtime_dir {
        Some((dir, PathState::Present(file))) if file.kind == FileKind::Dir => {
            let path = dir.join("podman").join("podman.sock");
            cache_problem = crate::cache::cache_folder_problem(user.uid, &path);
            match ask_service(&path).await {
                Ok((version, rootless)) => ServiceAnswer::Answered { version, rootless },
                Err(error) => ServiceAnswer::Failed {
                    socket: machine::path_state(&path),
                    path,
                    error,
                },
            }
        }
        _ => ServiceAnswer::NotAsked,
    };
    RootlessFacts {
        subuid: machine::read(SUBUID),
        subgid: machine::read(SUBGID),
        newuidmap: machine::executable("newuidmap"),
        newgidmap: machine::executable("newgidmap"),
        podman: machine::find_on_path("podman"),
        runtime_dir,
        service,
        os_release: machine::read("/etc/os-release").ok(),
        cache_problem,
        user,
    }
}

/// The user's own service, whatever the environment names.
async fn ask_service(socket: &Path) -> berth_core::Result<(String, bool)> {
    let options = PodmanOptions {
        socket: Some(socket.display().to_string()),
        ..PodmanOptions::default()
    };
    let info = PodmanEngine::connect(options).await?.info().await?;
    Ok((info.version, info.capabilities.rootless))
}
