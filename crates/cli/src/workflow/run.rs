//! Running the units of a build: every existence check at once, then the missing images built in dependency
//! order with at most `jobs` builds at a time; a push runs after its build without holding a build slot, so it
//! overlaps the next builds. A failure stops only the images that depend on it; everything else finishes and is
//! reported.

use std::sync::Arc;

use berth_core::engine::{BuildOptions, ContainerEngine, ContainerEngineExt, Credentials, Network};
use berth_core::plan::plan;
use berth_core::reference::ImageRef;
use berth_core::tag::{ImageName, Namer};
use berth_core::{Error, ErrorKind, Result};
use berth_registry::Existence;
use tokio::sync::{watch, Mutex, Semaphore};

use super::image_lock::{self, ImageLock, Taken};
use super::units::Unit;
use crate::commands::access::{EngineChoice, Registries};
use crate::progress::{output, ImageProgress};

/// How many existence checks run at once.
pub const CHECKS_AT_ONCE: usize = 32;

/// What `berth build` was asked to do with missing images.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Build even when the registry has the image.
    pub force: bool,
    /// Build but do not push.
    pub no_push: bool,
    /// When the registry cannot tell: fail, build, or skip.
    pub if_unknown: crate::args::IfUnknown,
    /// Network of RUN steps.
    pub network: Network,
    /// Ignore the engine's build cache.
    pub no_cache: bool,
    /// Builds at a time.
    pub jobs: usize,
}

/// How one unit ended.
#[derive(Debug)]
pub enum Outcome {
    /// The registry already had it.
    Present {
        /// Its digest there.
        digest: String,
    },
    /// Built and pushed.
    Pushed {
        /// The pushed digest.
        digest: String,
    },
    /// Built locally only (`--no-push`, or the spec names no registry).
    Local,
    /// Not built: the registry could not tell and the user chose to skip.
    Skipped(Error),
    /// Failed (or its base did).
    Failed(Error),
}

impl Outcome {
    /// The immutable reference of a unit in a registry, if it is there.
    pub fn digest(&self) -> Option<&str> {
        match self {
            Outcome::Present { digest } | Outcome::Pushed { digest } => Some(digest),
            _ => None,
        }
    }
}

/// Checks, builds and pushes `units`; one outcome per unit, in order. Errors that concern the whole run
/// (the engine cannot be chosen, `--if-unknown fail` met an unknown) end it early.
pub async fn run(
    units: &[Unit<'_>],
    namer: &Namer,
    registries: &Registries,
    engine: &EngineChoice,
    options: &RunOptions,
) -> Result<Vec<Outcome>> {
    let decisions = decide(units, registries, options).await?;
    let connected: Mutex<Option<Arc<dyn ContainerEngine>>> = Mutex::new(None);
    let slots = Semaphore::new(options.jobs.max(1));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        units.iter().map(|_| watch::channel(None::<bool>)).unzip();
    let work = units
        .iter()
        .zip(decisions)
        .enumerate()
        .map(|(i, (unit, decision))| {
            let connected = &connected;
            let slots = &slots;
            let sender = &senders[i];
            let base = unit.base.map(|b| receivers[b].clone());
            async move {
                let outcome = match decision {
                    Decision::Done(outcome) => outcome,
                    Decision::Build => {
                        let base_ok = match base {
                            None => true,
                            Some(mut rx) => matches!(
                                *rx.wait_for(Option::is_some).await.expect("sender lives"),
                                Some(true)
                            ),
                        };
                        if base_ok {
                            build_unit(unit, namer, registries, engine, connected, slots, options)
                                .await
                        } else {
                            let base_name = &units[unit.base.expect("has a base")].name;
                            Outcome::Failed(Error::new(
                                ErrorKind::BuildFailed,
                                format!("not built: its base image {base_name} failed"),
                            ))
                        }
                    }
                };
                let usable = !matches!(outcome, Outcome::Failed(_) | Outcome::Skipped(_));
                let _ = sender.send(Some(usable));
                outcome
            }
        });
    Ok(futures_util::future::join_all(work).await)
}

enum Decision {
    Done(Outcome),
    Build,
}

/// Asks the registries about every unit at once.
async fn decide(
    units: &[Unit<'_>],
    registries: &Registries,
    options: &RunOptions,
) -> Result<Vec<Decision>> {
    if options.force {
        return Ok(units.iter().map(|_| Decision::Build).collect());
    }
    let refs: Vec<ImageRef> = units
        .iter()
        .filter(|u| u.name.registry.is_some())
        .map(|u| ImageRef::parse(&u.name.to_string()))
        .collect::<Result<_>>()?;
    let mut answers = registries
        .client
        .exists_many(&refs, CHECKS_AT_ONCE)
        .await
        .into_iter();
    let mut decisions = Vec::with_capacity(units.len());
    for unit in units {
        let name = &unit.name;
        if name.registry.is_none() {
            // Nothing to ask and nowhere to push: build locally (flytekit does the same with a local daemon).
            decisions.push(Decision::Build);
            continue;
        }
        let decision = match answers.next().expect("one answer per reference") {
            Existence::Present { digest } => Decision::Done(Outcome::Present { digest }),
            Existence::Absent => Decision::Build,
            Existence::Unknown(err) => match options.if_unknown {
                crate::args::IfUnknown::Fail => return Err(unknown_error(name, err)),
                crate::args::IfUnknown::Build => Decision::Build,
                crate::args::IfUnknown::Skip => Decision::Done(Outcome::Skipped(err)),
            },
        };
        decisions.push(decision);
    }
    Ok(decisions)
}

fn unknown_error(name: &ImageName, err: Error) -> Error {
    let fix = match err.kind() {
        // The registry client's hint already fits where the refused credentials came from.
        ErrorKind::Unauthorized => err.hint().unwrap_or_default().to_string(),
        ErrorKind::Temporary => "check that the registry is reachable, then retry".to_string(),
        _ => "check the registry address; for a registry with a private CA pass --ca-file, for plain HTTP \
              --insecure-registry"
            .to_string(),
    };
    err.context(format!("cannot tell whether {name} exists"))
        .with_hint(format!(
            "{fix}; or pass --if-unknown build|skip to go on without knowing"
        ))
}

/// Connects on first use; every unit shares the connection.
async fn engine_for(
    choice: &EngineChoice,
    connected: &Mutex<Option<Arc<dyn ContainerEngine>>>,
) -> Result<Arc<dyn ContainerEngine>> {
    let mut slot = connected.lock().await;
    if let Some(engine) = slot.as_ref() {
        return Ok(engine.clone());
    }
    let engine: Arc<dyn ContainerEngine> = Arc::from(choice.connect().await?);
    *slot = Some(engine.clone());
    Ok(engine)
}

/// A build that failed on one of the plan's helper images (uv, micromamba) says which spec field chooses it:
/// with no network to Docker Hub or GHCR, that is the fix.
fn helper_image_hint(error: Error, plan: &berth_core::plan::BuildPlan) -> Error {
    let Some(helper) = plan
        .helper_images
        .iter()
        .find(|h| error.message().contains(&h.reference))
    else {
        return error;
    };
    let field = if helper.reference.contains("micromamba") {
        "`builder_config: {micromamba_image: ...}` for a reachable copy, or `python_exec` to use the base \
         image's Python, which needs no micromamba"
    } else {
        "`builder_config: {uv_image: ...}` for a reachable copy"
    };
    let hint = match error.hint() {
        Some(before) => format!(
            "{before}; the image `{}` is a builder image: set {field}",
            helper.reference
        ),
        None => format!(
            "the image `{}` is a builder image: set {field}",
            helper.reference
        ),
    };
    error.with_hint(hint)
}

/// A build whose engine pulled a base or helper image over HTTPS from a registry that speaks plain HTTP says
/// exactly what to change for that engine (berth tells Podman and containerd itself for loopback registries and
/// `--insecure-registry`; dockerd decides alone).
fn plain_http_hint(error: Error, engine: &str, plan: &berth_core::plan::BuildPlan) -> Error {
    if !error
        .message()
        .contains("server gave HTTP response to HTTPS client")
    {
        return error;
    }
    let pulls = std::iter::once(plan.base_image.as_str())
        .chain(plan.helper_images.iter().map(|h| h.reference.as_str()));
    let Some(host) = pulls
        .filter_map(|r| ImageRef::parse(r).ok())
        .map(|r| r.registry)
        .find(|host| error.message().contains(host.as_str()))
    else {
        return error;
    };
    let fix = match engine {
        "docker" => format!(
            "dockerd pulls {host} over HTTPS and only treats 127.0.0.0/8 as plain HTTP by itself: add \"{host}\" to \
             \"insecure-registries\" in /etc/docker/daemon.json and restart dockerd"
        ),
        _ => format!(
            "{host} speaks plain HTTP: pass `--insecure-registry {host}` and berth tells {engine} to pull it over \
             plain HTTP"
        ),
    };
    error.with_hint(fix)
}

async fn build_unit(
    unit: &Unit<'_>,
    namer: &Namer,
    registries: &Registries,
    choice: &EngineChoice,
    connected: &Mutex<Option<Arc<dyn ContainerEngine>>>,
    slots: &Semaphore,
    options: &RunOptions,
) -> Outcome {
    let name = &unit.name;
    let _lock = match one_build_at_a_time(name, registries, options).await {
        Ok(Ok(lock)) => lock,
        Ok(Err(present)) => return present,
        Err(e) => {
            // The lock only keeps two berths from building one image twice: without it the build is still right.
            output().print(&format!(
                "{name}: warning: building without the per-image lock ({e}); another berth may build it at the same time"
            ));
            None
        }
    };
    let progress = output().image(&name.name);
    let built = async {
        let plan = plan(namer, unit.spec)?;
        let engine = engine_for(choice, connected).await?;
        engine.check_plan(&plan).await?;
        let (credentials, insecure_registries) = pull_access(registries, &plan)?;
        let build = BuildOptions {
            tags: vec![name.to_string()],
            credentials,
            network: options.network,
            no_cache: options.no_cache,
            insecure_registries,
        };
        let _slot = slots.acquire().await.expect("semaphore open");
        output().say(&format!("{name}: building on {}", engine.name()));
        let built = engine.build(&plan, &build, &progress).await.map_err(|e| {
            let e = plain_http_hint(helper_image_hint(e, &plan), engine.name(), &plan);
            e.context(format!("building {name}"))
        })?;
        Ok::<_, Error>((engine, built))
    }
    .await;
    let (engine, built) = match built {
        Ok(done) => done,
        Err(e) => return Outcome::Failed(e),
    };
    if options.no_push || name.registry.is_none() {
        let why = if name.registry.is_none() {
            "the spec names no registry, so it is not pushed"
        } else {
            "not pushed (--no-push)"
        };
        output().say(&format!("{name}: built locally ({}); {why}", built.id));
        return Outcome::Local;
    }
    match push(&*engine, registries, name, &progress).await {
        Ok(digest) => Outcome::Pushed { digest },
        Err(e) => Outcome::Failed(e),
    }
}

/// Waits while another berth on this machine builds the same image, then asks the registry again: `Ok(Err)` with
/// the image's outcome when the other one pushed it meanwhile, else the lock to hold until the push is done.
/// Local-only and forced builds take no lock (there is nothing to find in the registry afterwards).
async fn one_build_at_a_time(
    name: &ImageName,
    registries: &Registries,
    options: &RunOptions,
) -> Result<std::result::Result<Option<ImageLock>, Outcome>> {
    let Some(dir) = crate::commands::cache_dir() else {
        return Ok(Ok(None));
    };
    if name.registry.is_none() || options.no_push || options.force {
        return Ok(Ok(None));
    }
    let waiting = || {
        output().say(&format!(
            "{name}: another berth on this machine is building it; waiting for it"
        ))
    };
    match image_lock::take(dir, &name.to_string(), waiting).await? {
        Taken::Free(lock) => Ok(Ok(Some(lock))),
        Taken::AfterWaiting(lock) => {
            let image = ImageRef::parse(&name.to_string())?;
            match registries.client.exists(&image).await {
                Existence::Present { digest } => {
                    output().say(&format!(
                        "{name}: the other berth pushed it (@{digest}); not building it again"
                    ));
                    Ok(Err(Outcome::Present { digest }))
                }
                _ => Ok(Ok(Some(lock))),
            }
        }
    }
}

/// Credentials for the base and helper images' registries, and which of those registries may be pulled from
/// over plain HTTP (the same rule as for pushes).
fn pull_access(
    registries: &Registries,
    plan: &berth_core::plan::BuildPlan,
) -> Result<(Vec<Credentials>, Vec<String>)> {
    let mut credentials: Vec<Credentials> = Vec::new();
    let mut hosts: Vec<String> = Vec::new();
    let pulls = std::iter::once(plan.base_image.as_str())
        .chain(plan.helper_images.iter().map(|h| h.reference.as_str()));
    for reference in pulls {
        let host = ImageRef::parse(reference)?.registry;
        if hosts.contains(&host) {
            continue;
        }
        if let Some(found) = registries.credentials(&host)? {
            credentials.push(found);
        }
        hosts.push(host);
    }
    let insecure = hosts
        .into_iter()
        .filter(|host| registries.is_insecure(host))
        .collect();
    Ok((credentials, insecure))
}

/// Pushes a built image; its digest.
pub async fn push(
    engine: &dyn ContainerEngine,
    registries: &Registries,
    name: &ImageName,
    progress: &ImageProgress,
) -> Result<String> {
    let image = ImageRef::parse(&name.to_string())?;
    let transfer = registries.transfer_options(&image)?;
    output().say(&format!("{name}: pushing"));
    // A push that fails temporarily (a 5xx, a 429, a reset connection) is made again whole: dockerd retries
    // neither a 429 nor a failed manifest PUT, and Podman no 5xx. A push is idempotent (blobs are addressed by
    // content and what the registry has is skipped; the manifest goes last), so nothing half-written is trusted.
    let policy = berth_registry::RetryPolicy {
        base_delay: std::time::Duration::from_secs(1),
        ..berth_registry::RetryPolicy::default()
    };
    let mut attempt = 1;
    let pushed = loop {
        let reference = name.to_string();
        match super::push_via::push(engine, registries, &reference, &transfer, progress).await {
            Err(e) if e.kind() == ErrorKind::Temporary && attempt < policy.max_attempts => {
                let delay = policy.delay(attempt, None);
                output().say(&format!(
                    "{name}: the push failed ({}); pushing again in {:.1} s (attempt {} of {})",
                    e.message(),
                    delay.as_secs_f64(),
                    attempt + 1,
                    policy.max_attempts
                ));
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            result => break result,
        }
    };
    match pushed {
        Ok(pushed) => Ok(pushed.digest),
        Err(e) => {
            let unauthorized = e.kind() == ErrorKind::Unauthorized;
            let e = e.context(format!("pushing {name}"));
            Err(if unauthorized {
                e.with_hint(registries.login_hint(&image.registry))
            } else {
                e
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_core::plan::{BuildPlan, HelperImage};

    #[test]
    fn a_failing_builder_image_names_the_field_that_chooses_it() {
        let plan = BuildPlan {
            base_image: "debian:bookworm-slim".into(),
            platform: "linux/amd64".into(),
            helper_images: vec![
                HelperImage {
                    alias: "uv".into(),
                    reference: "ghcr.io/astral-sh/uv:0.5.1".into(),
                },
                HelperImage {
                    alias: "micromamba".into(),
                    reference: "mambaorg/micromamba:2.0.3-debian12-slim".into(),
                },
            ],
            steps: Vec::new(),
            context: Vec::new(),
            secrets: Vec::new(),
        };
        let failed = |message: &str| {
            helper_image_hint(
                Error::new(berth_core::ErrorKind::Temporary, message).with_hint("retry later"),
                &plan,
            )
        };
        let mamba = failed("helper image mambaorg/micromamba:2.0.3-debian12-slim: no such host");
        let hint = mamba.hint().unwrap_or_default();
        assert!(hint.starts_with("retry later; "), "{hint}");
        assert!(
            hint.contains("micromamba_image") && hint.contains("python_exec"),
            "{hint}"
        );
        let uv = failed("pulling ghcr.io/astral-sh/uv:0.5.1: refused");
        assert!(uv.hint().unwrap_or_default().contains("uv_image"), "{uv}");
        let other = failed("apt-get failed");
        assert_eq!(other.hint(), Some("retry later"));
    }

    #[test]
    fn a_plain_http_registry_gets_each_engines_fix() {
        let plan = BuildPlan {
            base_image: "reg.lan:5000/base:1".into(),
            platform: "linux/amd64".into(),
            helper_images: Vec::new(),
            steps: Vec::new(),
            context: Vec::new(),
            secrets: Vec::new(),
        };
        let failed = || {
            Error::new(
                berth_core::ErrorKind::BuildFailed,
                "pinging container registry reg.lan:5000: http: server gave HTTP response to HTTPS client",
            )
        };
        let docker = plain_http_hint(failed(), "docker", &plan);
        let hint = docker.hint().unwrap_or_default();
        assert!(
            hint.contains("/etc/docker/daemon.json") && hint.contains("\"reg.lan:5000\""),
            "{hint}"
        );
        let podman = plain_http_hint(failed(), "podman", &plan);
        assert!(
            podman
                .hint()
                .unwrap_or_default()
                .contains("--insecure-registry reg.lan:5000"),
            "{podman}"
        );
        let other = plain_http_hint(
            Error::new(berth_core::ErrorKind::BuildFailed, "no"),
            "docker",
            &plan,
        );
        assert_eq!(other.hint(), None);
    }
}
