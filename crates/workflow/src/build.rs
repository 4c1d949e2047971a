//! One unit's build and push, as its own task: planning (which walks source trees and may run `git`) on a
//! blocking thread, a build slot only while the engine builds, credentials from the run's registry client, then
//! the push, retried whole when it fails for a temporary reason.

use berth_core::engine::{
    BuildOptions, ContainerEngine, ContainerEngineExt, Credentials, Progress,
};
use berth_core::plan::{plan, BuildPlan};
use berth_core::reference::ImageRef;
use berth_core::tag::ImageName;
use berth_core::{Error, ErrorKind, Result};
use berth_registry::Existence;
use tokio::sync::Semaphore;

use crate::hints::{helper_image_hint, plain_http_hint};
use crate::image_lock::{self, ImageLock, Taken};
use crate::registries::Registries;
use crate::report::{say, warn};
use crate::run::{Context, Opened, Outcome, RunOptions};
use crate::units::Unit;

pub(crate) async fn build_unit(
    unit: &Unit,
    context: &Context,
    opened: &Opened,
    slots: &Semaphore,
    options: &RunOptions,
) -> Outcome {
    let name = &unit.name;
    let status = &*context.progress;
    let _lock = match one_build_at_a_time(name, context, options).await {
        Ok(Ok(lock)) => lock,
        Ok(Err(present)) => return present,
        Err(e) => {
            // The lock only keeps two berths from building one image twice: without it the build is still right.
            warn(status, format!(
                "{name}: warning: building without the per-image lock ({e}); another berth may build it at the same time"
            ));
            None
        }
    };
    let progress = context.progress.image(&name.name);
    let built = async {
        let plan = plan_off_runtime(context, unit).await?;
        let engine = opened
            .get_or_try_init(|| context.engine.open())
            .await?
            .clone();
        engine.check_plan(&plan).await?;
        let (credentials, insecure_registries) = pull_access(&context.registries, &plan).await?;
        let build = BuildOptions {
            tags: vec![name.to_string()],
            credentials,
            network: options.network,
            no_cache: options.no_cache,
            insecure_registries,
        };
        let _slot = slots
            .acquire()
            .await
            .map_err(|_| Error::new(ErrorKind::Cancelled, "the run's build slots are closed"))?;
        say(status, format!("{name}: building on {}", engine.name()));
        let built = engine.build(&plan, &build, &*progress).await.map_err(|e| {
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
        say(
            status,
            format!("{name}: built locally ({}); {why}", built.id),
        );
        return Outcome::Local;
    }
    match push(&*engine, &context.registries, name, status, &*progress).await {
        Ok(digest) => Outcome::Pushed { digest },
        Err(e) => Outcome::Failed(e),
    }
}

/// The unit's build plan, made on a blocking thread: it hashes the spec's source trees (unless the digest cache
/// knows them) and may run `git`, which must not hold up the other units' builds, pushes and progress.
async fn plan_off_runtime(context: &Context, unit: &Unit) -> Result<BuildPlan> {
    let namer = context.namer.clone();
    let spec = unit.spec.clone();
    tokio::task::spawn_blocking(move || plan(&namer, &spec))
        .await
        .map_err(|e| {
            Error::new(
                ErrorKind::Cancelled,
                format!("planning {} stopped: {e}", unit.name),
            )
        })?
}

/// Waits while another berth on this machine builds the same image, then asks the registry again: `Ok(Err)` with
/// the image's outcome when the other one pushed it meanwhile, else the lock to hold until the push is done.
/// Local-only and forced builds take no lock (there is nothing to find in the registry afterwards).
async fn one_build_at_a_time(
    name: &ImageName,
    context: &Context,
    options: &RunOptions,
) -> Result<std::result::Result<Option<ImageLock>, Outcome>> {
    let Some(dir) = options.lock_dir.clone() else {
        return Ok(Ok(None));
    };
    if name.registry.is_none() || options.no_push || options.force {
        return Ok(Ok(None));
    }
    let status = context.progress.clone();
    let waiting = move || {
        say(
            &*status,
            format!("{name}: another berth on this machine is building it; waiting for it"),
        )
    };
    match image_lock::take(dir, &name.to_string(), waiting).await? {
        Taken::Free(lock) => Ok(Ok(Some(lock))),
        Taken::AfterWaiting(lock) => {
            let image = ImageRef::parse(&name.to_string())?;
            match context.registries.client.exists(&image).await {
                Existence::Present { digest } => {
                    say(
                        &*context.progress,
                        format!(
                            "{name}: the other berth pushed it (@{digest}); not building it again"
                        ),
                    );
                    Ok(Err(Outcome::Present { digest }))
                }
                _ => Ok(Ok(Some(lock))),
            }
        }
    }
}

/// Credentials for the base and helper images' registries, and which of those registries may be pulled from
/// over plain HTTP (the same rule as for pushes).
async fn pull_access(
    registries: &Registries,
    plan: &BuildPlan,
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
        if let Some(found) = registries.credentials(&host).await? {
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

/// Pushes a built image; its digest. Status lines go to `status`, the transfer's progress to `progress`.
pub async fn push(
    engine: &dyn ContainerEngine,
    registries: &Registries,
    name: &ImageName,
    status: &dyn Progress,
    progress: &dyn Progress,
) -> Result<String> {
    let image = ImageRef::parse(&name.to_string())?;
    let transfer = registries.transfer_options(&image).await?;
    say(status, format!("{name}: pushing"));
    // A push that fails temporarily (a 5xx, a 429, a reset connection) is made again whole: dockerd retries
    // neither a 429 nor a failed manifest PUT, and Podman no 5xx. A push is idempotent (blobs are addressed by
    // content and what the registry has is skipped; the manifest goes last), so nothing half-written is trusted.
    // A push refused as unauthorized is made again once: a token may have died while a layer went up (dockerd
    // and Podman give up on that, and berth's push from an export cannot send a layer of its one stream again);
    // the next push starts with a fresh token, and credentials the registry refuses are refused again.
    let policy = berth_registry::RetryPolicy {
        base_delay: std::time::Duration::from_secs(1),
        ..berth_registry::RetryPolicy::default()
    };
    let mut attempt = 1;
    let mut reauthorized = false;
    let reference = name.to_string();
    let pushed = loop {
        match crate::push_via::push(engine, registries, &reference, &transfer, progress).await {
            Err(e) if e.kind() == ErrorKind::Unauthorized && !reauthorized => {
                say(
                    status,
                    format!(
                        "{name}: the registry refused the push ({}); pushing again once with a fresh token \
                         (a token may have ended during the upload)",
                        e.message()
                    ),
                );
                reauthorized = true;
            }
            Err(e) if e.is_temporary() && attempt < policy.max_attempts => {
                let delay = policy.delay(attempt, None);
                say(
                    status,
                    format!(
                        "{name}: the push failed ({}); pushing again in {:.1} s (attempt {} of {})",
                        e.message(),
                        delay.as_secs_f64(),
                        attempt + 1,
                        policy.max_attempts
                    ),
                );
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
                e.with_hint(registries.login_hint(&image.registry).await)
            } else {
                e
            })
        }
    }
}
