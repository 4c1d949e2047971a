//! Running the units of a build: every existence check at once, then each missing image as a task of its own, in
//! dependency order (an image waits for its base) with at most `jobs` builds at a time; a push runs after its
//! build without holding a build slot, so it overlaps the next builds. A failure stops only the images that depend
//! on it; everything else finishes and is reported. Dropping the run cancels every task it started.

use std::path::PathBuf;
use std::sync::Arc;

use berth_core::engine::{ContainerEngine, Network};
use berth_core::reference::ImageRef;
use berth_core::tag::{ImageName, Namer};
use berth_core::{Error, ErrorKind, Result};
use berth_registry::{Existence, RegistryClient};
use tokio::sync::{watch, OnceCell, Semaphore};
use tokio::task::JoinSet;

use crate::build::build_unit;
use crate::engine::OpenEngine;
use crate::registries::Registries;
use crate::report::RunProgress;
use crate::units::Unit;

/// How many existence checks run at once.
pub const CHECKS_AT_ONCE: usize = 32;

/// When the registry cannot tell whether an image exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfUnknown {
    /// End the run with an error: never guess.
    Fail,
    /// Build and push it anyway.
    Build,
    /// Skip it, reporting it as unchecked.
    Skip,
}

/// What the run was asked to do with missing images.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Build even when the registry has the image.
    pub force: bool,
    /// Build but do not push.
    pub no_push: bool,
    /// When the registry cannot tell: fail, build, or skip.
    pub if_unknown: IfUnknown,
    /// Network of RUN steps.
    pub network: Network,
    /// Ignore the engine's build cache.
    pub no_cache: bool,
    /// Builds at a time.
    pub jobs: usize,
    /// Where the per-image build locks live (berth's cache folder); `None` builds without them.
    pub lock_dir: Option<PathBuf>,
}

/// What a run works with, shared by its tasks.
#[derive(Clone)]
pub struct Context {
    /// Names specs and plans their builds (its digest cache keeps unchanged trees from being read again).
    pub namer: Arc<Namer>,
    /// Registry access.
    pub registries: Arc<Registries>,
    /// The engine, opened when the first build needs it.
    pub engine: Arc<dyn OpenEngine>,
    /// Where progress goes.
    pub progress: Arc<dyn RunProgress>,
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

/// The engine of a run, opened once by the first build that needs it.
pub(crate) type Opened = Arc<OnceCell<Arc<dyn ContainerEngine>>>;

/// Checks, builds and pushes `units`; one outcome per unit, in order. Errors that concern the whole run
/// (`--if-unknown fail` met an unknown) end it early.
pub async fn run(units: &[Unit], context: &Context, options: &RunOptions) -> Result<Vec<Outcome>> {
    let decisions = decide(units, &context.registries, options).await?;
    let opened: Opened = Arc::default();
    let slots = Arc::new(Semaphore::new(options.jobs.max(1)));
    let (senders, receivers): (Vec<_>, Vec<_>) =
        units.iter().map(|_| watch::channel(None::<bool>)).unzip();
    // A JoinSet aborts its tasks when dropped: a run that is dropped (Ctrl-C) stops every build it started.
    let mut tasks = JoinSet::new();
    for (i, (decision, sender)) in decisions.into_iter().zip(senders).enumerate() {
        let unit = units[i].clone();
        let base = unit
            .base
            .map(|b| (receivers[b].clone(), units[b].name.clone()));
        let (context, opened, slots, options) = (
            context.clone(),
            opened.clone(),
            slots.clone(),
            options.clone(),
        );
        tasks.spawn(async move {
            let outcome = match decision {
                Decision::Done(outcome) => outcome,
                Decision::Build => {
                    let failed_base = match base {
                        Some((rx, base_name)) => (!base_usable(rx).await).then_some(base_name),
                        None => None,
                    };
                    match failed_base {
                        Some(base_name) => Outcome::Failed(Error::new(
                            ErrorKind::BuildFailed,
                            format!("not built: its base image {base_name} failed"),
                        )),
                        None => build_unit(&unit, &context, &opened, &slots, &options).await,
                    }
                }
            };
            let usable = !matches!(outcome, Outcome::Failed(_) | Outcome::Skipped(_));
            let _ = sender.send(Some(usable));
            (i, outcome)
        });
    }
    let mut outcomes: Vec<Option<Outcome>> = units.iter().map(|_| None).collect();
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((i, outcome)) => outcomes[i] = Some(outcome),
            // A task only ends otherwise by panicking (nothing aborts them while the run is alive): a bug,
            // raised here as it would have been without the task.
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| unreachable!("every task reported")))
        .collect())
}

/// Waits for a base unit's outcome: whether what is built on it can be built.
async fn base_usable(mut rx: watch::Receiver<Option<bool>>) -> bool {
    match rx.wait_for(Option::is_some).await {
        Ok(value) => *value == Some(true),
        // its task is gone without a word: it cannot be built on
        Err(_) => false,
    }
}

enum Decision {
    Done(Outcome),
    Build,
}

/// Asks the registries about every unit at once.
async fn decide(
    units: &[Unit],
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
    let mut answers = exists_all(&registries.client, refs).await.into_iter();
    let mut decisions = Vec::with_capacity(units.len());
    for unit in units {
        let name = &unit.name;
        if name.registry.is_none() {
            // Nothing to ask and nowhere to push: build locally (flytekit does the same with a local daemon).
            decisions.push(Decision::Build);
            continue;
        }
        let Some(answer) = answers.next() else {
            unreachable!("exists_many answers once per reference")
        };
        let decision = match answer {
            Existence::Present { digest } => Decision::Done(Outcome::Present { digest }),
            Existence::Absent => Decision::Build,
            Existence::Unknown(err) => match options.if_unknown {
                IfUnknown::Fail => return Err(unknown_error(name, err)),
                IfUnknown::Build => Decision::Build,
                IfUnknown::Skip => Decision::Done(Outcome::Skipped(err)),
            },
        };
        decisions.push(decision);
    }
    Ok(decisions)
}

/// Whether each of `refs` is in its registry, at most [`CHECKS_AT_ONCE`] at a time over the client's shared
/// pool, in the order of `refs`. Each check is a task of its own (the registry client's stream of checks borrows
/// the client, which would keep a run from being spawned on another thread by a front end).
async fn exists_all(client: &RegistryClient, refs: Vec<ImageRef>) -> Vec<Existence> {
    let slots = Arc::new(Semaphore::new(CHECKS_AT_ONCE));
    let mut checks = JoinSet::new();
    for (i, image) in refs.into_iter().enumerate() {
        let (client, slots) = (client.clone(), slots.clone());
        checks.spawn(async move {
            let _slot = slots.acquire_owned().await;
            (i, client.exists(&image).await)
        });
    }
    let mut answers: Vec<Option<Existence>> = Vec::new();
    answers.resize_with(checks.len(), || None);
    while let Some(joined) = checks.join_next().await {
        match joined {
            Ok((i, answer)) => answers[i] = Some(answer),
            Err(e) => std::panic::resume_unwind(e.into_panic()),
        }
    }
    answers
        .into_iter()
        .map(|a| a.expect("every check answered"))
        .collect()
}

fn unknown_error(name: &ImageName, err: Error) -> Error {
    let fix = match err.kind() {
        // The registry client's hint already fits where the refused credentials came from.
        ErrorKind::Unauthorized => err.hint().unwrap_or_default().to_string(),
        ErrorKind::Unavailable => "check that the registry is reachable, then retry".to_string(),
        _ => "check the registry address; for a registry with a private CA pass --ca-file, for plain HTTP \
              --insecure-registry"
            .to_string(),
    };
    err.context(format!("cannot tell whether {name} exists"))
        .with_hint(format!(
            "{fix}; or pass --if-unknown build|skip to go on without knowing"
        ))
}
