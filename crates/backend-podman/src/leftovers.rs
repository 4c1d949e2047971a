//! What a berth that is gone left in a Podman service on this host, and the end of a build berth gave up.
//!
//! Both rest on a build's [`Mark`] (see [`crate::steps`]): it is in the `/etc/hosts` of the build's RUN steps
//! and in the record buildah keeps of each working container (`buildah.json`, `CommonBuildOpts.AddHost`,
//! under `GRAPHROOT/DRIVER-containers/ID/userdata`). A mark names the berth process that made it (pid and
//! start time), so a step or working container is a leftover exactly when that process no longer runs: a
//! berth still building (this one or another) keeps its own, and builds of other clients carry no mark at
//! all and are never touched. A service answers only for its own steps: those running in its user namespace
//! (a rootless user's steps are not the rootful service's leftovers, though a root berth sees them too).
//!
//! Ending a leftover step is enough when the service still runs its build: buildah sees the step fail, commits
//! nothing and removes its working container (measured on Podman 4.3.1). A working container whose build the
//! service no longer runs (the service was restarted meanwhile) stays; it is removed with
//! `DELETE /libpod/containers/{id}?force=true`, which libpod 4.3 accepts for buildah's containers.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use berth_core::engine::Leftover;
use berth_core::Result;
use http::Method;

use crate::errors::Op;
use crate::steps::{self, Mark, MarkedStep};
use crate::{endpoint, service_process, PodmanEngine, PodmanOptions};

/// A buildah working container that carries a mark.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MarkedContainer {
    /// Its id.
    pub id: String,
    /// Its name (`IMAGE-working-container`).
    pub name: String,
    /// Its build's mark.
    pub mark: Mark,
    /// How long ago buildah made it.
    pub age: Option<Duration>,
}

/// Where the service's storage keeps its containers' records, when berth can read them (a service on this
/// host, as its own user or root).
async fn records(engine: &PodmanEngine) -> Result<Option<PathBuf>> {
    if !matches!(engine.socket(), endpoint::Address::Unix(_)) {
        return Ok(None);
    }
    let service = engine.service().await?;
    if service.graph_root.is_empty() || service.graph_driver.is_empty() {
        return Ok(None);
    }
    let dir = Path::new(&service.graph_root).join(format!("{}-containers", service.graph_driver));
    Ok(dir.is_dir().then_some(dir))
}

/// Listings made when one fails: libpod 4.3 fails the whole listing (HTTP 500, `determining buildah container
/// for container ID: container not known`) when a working container goes while it lists, as one does right
/// after berth ended its step, and whenever other builds run on the service.
const LISTINGS: usize = 5;

/// The ids of the service's buildah working containers (libpod's "external" ones, state `storage`).
async fn working_containers(engine: &PodmanEngine) -> Result<Vec<String>> {
    let path = "/libpod/containers/json?all=true&external=true";
    let mut attempt = 1;
    let listing = loop {
        match engine.get_json(path, Op::Inspect).await {
            Ok(listing) => break listing,
            Err(_) if attempt < LISTINGS => {
                attempt += 1;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(e) => return Err(e),
        }
    };
    Ok(listing
        .as_array()
        .into_iter()
        .flatten()
        .filter(|c| c["State"] == "storage")
        .filter_map(|c| c["Id"].as_str().map(str::to_string))
        .collect())
}

/// The marked working containers of the service, read from their records (none when berth cannot read
/// them). A service without working containers costs one listing.
async fn marked_in_service(engine: &PodmanEngine) -> Result<Vec<MarkedContainer>> {
    let ids = working_containers(engine).await?;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let Some(dir) = records(engine).await? else {
        return Ok(Vec::new());
    };
    Ok(marked_containers(&dir, &ids))
}

/// The marked working containers recorded under `dir`, of those with `ids` (all, when `ids` is empty).
fn marked_containers(dir: &Path, ids: &[String]) -> Vec<MarkedContainer> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter(|e| ids.is_empty() || ids.iter().any(|id| e.file_name() == id.as_str()))
        .filter_map(|entry| {
            let record = entry.path().join("userdata/buildah.json");
            let text = std::fs::read(&record).ok()?;
            let builder: serde_json::Value = serde_json::from_slice(&text).ok()?;
            let mark = builder["CommonBuildOpts"]["AddHost"]
                .as_array()?
                .iter()
                .filter_map(|h| h.as_str()?.split(':').next())
                .find_map(Mark::parse)?;
            let age = std::fs::metadata(&record)
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| SystemTime::now().duration_since(t).ok());
            Some(MarkedContainer {
                id: entry.file_name().to_string_lossy().into_owned(),
                name: builder["container-name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                mark,
                age,
            })
        })
        .collect()
}

/// How a leftover step reads in a message.
fn step_leftover(step: &MarkedStep) -> Leftover {
    let command: String = step.command.chars().take(80).collect();
    Leftover {
        what: format!(
            "a RUN step still running (pid {}: `{command}`) of a build by berth process {}",
            step.pid, step.mark.pid
        ),
        age: Some(step.age),
        removed_by_next_run: true,
    }
}

/// How a leftover working container reads in a message.
fn container_leftover(container: &MarkedContainer) -> Leftover {
    let short: String = container.id.chars().take(12).collect();
    Leftover {
        what: format!(
            "buildah working container {} ({short}) of a build by berth process {}",
            container.name, container.mark.pid
        ),
        age: container.age,
        removed_by_next_run: true,
    }
}

/// The steps and working containers of berth processes that are gone.
pub(crate) async fn leftovers(engine: &PodmanEngine) -> Result<Vec<Leftover>> {
    if !matches!(engine.socket(), endpoint::Address::Unix(_)) {
        return Ok(Vec::new());
    }
    let mut found: Vec<Leftover> = orphan_steps(engine).iter().map(step_leftover).collect();
    found.extend(
        marked_in_service(engine)
            .await?
            .iter()
            .filter(|c| !c.mark.owner_alive())
            .map(container_leftover),
    );
    Ok(found)
}

/// The marked steps of berth processes that are gone, of this service's builds only: this host's process table
/// holds the steps of every service here (a root berth sees a rootless user's too), and a service's steps run
/// in its process's user namespace ([`service_process`]). When berth cannot find that process or read its
/// namespace (a service in another PID namespace, a socket whose owner is not the service's user), the service
/// answers for no step at all rather than for every service's.
fn orphan_steps(engine: &PodmanEngine) -> Vec<MarkedStep> {
    let endpoint::Address::Unix(socket) = engine.socket() else {
        return Vec::new();
    };
    let Some(namespace) =
        service_process::find(engine.service_uid(), socket).and_then(|p| p.user_namespace())
    else {
        return Vec::new();
    };
    orphans_in(steps::marked_steps(), &namespace)
}

/// Those of `steps` that run in the user namespace `namespace` and whose berth is gone.
fn orphans_in(steps: Vec<MarkedStep>, namespace: &str) -> Vec<MarkedStep> {
    steps
        .into_iter()
        .filter(|s| s.user_namespace.as_deref() == Some(namespace))
        .filter(|s| !s.mark.owner_alive())
        .collect()
}

/// How long the service may take to drop a working container after its step was ended, before berth removes
/// the container itself.
const SETTLE: Duration = Duration::from_secs(10);

/// Ends the steps and removes the working containers of berth processes that are gone; what it removed.
pub(crate) async fn remove_leftovers(engine: &PodmanEngine) -> Result<Vec<Leftover>> {
    if !matches!(engine.socket(), endpoint::Address::Unix(_)) {
        return Ok(Vec::new());
    }
    let orphans = orphan_steps(engine);
    steps::end(&orphans);
    let mut removed: Vec<Leftover> = orphans.iter().map(step_leftover).collect();
    let dead = || async {
        let marked = marked_in_service(engine).await?;
        Ok::<_, berth_core::Error>(
            marked
                .into_iter()
                .filter(|c| !c.mark.owner_alive())
                .collect::<Vec<_>>(),
        )
    };
    // a build the service still runs removes its container once its step ended: give it the moment
    let until = Instant::now() + SETTLE;
    let mut left = dead().await?;
    while !orphans.is_empty() && !left.is_empty() && Instant::now() < until {
        tokio::time::sleep(Duration::from_millis(250)).await;
        left = dead().await?;
    }
    for container in left {
        let path = format!("/libpod/containers/{}?force=true", container.id);
        let gone = match engine.request(Method::DELETE, &path, Op::Remove).await {
            Ok(_) => true,
            // the service removing it meanwhile (buildah after its step ended) makes it gone all the same; one
            // still there is the next run's to remove, and what was removed so far is still said
            Err(_) => !working_containers(engine)
                .await
                .is_ok_and(|ids| ids.contains(&container.id)),
        };
        if gone {
            removed.push(container_leftover(&container));
        }
    }
    Ok(removed)
}

/// Upper bound for ending a given-up build: berth's exit waits for it.
const GIVE_UP_LIMIT: Duration = Duration::from_secs(60);
/// How long a given-up build is watched when none of it shows: the service may still be starting it (the
/// request was sent, its first step not begun), and a build it starts after the hang-up runs at least until its
/// first step, which this then ends.
const START_GRACE: Duration = Duration::from_secs(5);
/// How long ending a build waits for the service to say where its storage is.
const ASK_LIMIT: Duration = Duration::from_secs(10);

/// Ends the build marked `mark` on the service `options` names (on this host): until none of its working
/// containers remains (and at least [`START_GRACE`] passed), its steps are ended as they appear. Runs on a
/// thread of its own (`berth_core::background`), with a runtime of its own.
pub(crate) fn end_build(options: PodmanOptions, mark: Mark) {
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return steps::end_build(mark);
    };
    runtime.block_on(async move {
        // a service busy with the very build being ended may answer late: then watch the marked steps alone
        let dir = match PodmanEngine::new(options) {
            Ok(engine) => tokio::time::timeout(ASK_LIMIT, records(&engine))
                .await
                .ok()
                .and_then(|r| r.ok().flatten()),
            Err(_) => None,
        };
        let started = Instant::now();
        while started.elapsed() < GIVE_UP_LIMIT {
            let steps: Vec<MarkedStep> = steps::marked_steps()
                .into_iter()
                .filter(|s| s.mark == mark)
                .collect();
            steps::end(&steps);
            let building = match &dir {
                Some(dir) => marked_containers(dir, &[]).iter().any(|c| c.mark == mark),
                None => !steps.is_empty(),
            };
            if !building && started.elapsed() >= START_GRACE {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(pid: u32, owner: Mark, namespace: Option<&str>) -> MarkedStep {
        MarkedStep {
            pid,
            mark: owner,
            command: "sleep 900".into(),
            age: Duration::ZERO,
            user_namespace: namespace.map(str::to_string),
        }
    }

    #[test]
    fn a_service_answers_only_for_the_dead_berths_steps_in_its_own_user_namespace() {
        // no process has pid u32::MAX: that berth is gone; this test's own process still runs
        let gone = Mark {
            pid: u32::MAX,
            started: 1,
            build: 0,
        };
        let alive = Mark::next();
        let (rootful, rootless) = ("user:[4026531837]", "user:[4026532174]");
        let found = vec![
            step(10, gone, Some(rootful)),
            step(11, gone, Some(rootless)),
            step(12, alive, Some(rootful)),
            step(13, gone, None),
        ];
        let pids = |namespace| {
            orphans_in(found.clone(), namespace)
                .iter()
                .map(|s| s.pid)
                .collect::<Vec<_>>()
        };
        assert_eq!(pids(rootful), [10]);
        assert_eq!(pids(rootless), [11]);
    }
}
