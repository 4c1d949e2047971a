//! `berth build`: name every spec, ask the registries, build only what is missing, push it, print name@digest.
//! With no spec arguments inside a project (`berth.yaml`), every image of the project is built and `berth.lock`
//! maps each task to an immutable reference; `--check` only says whether that lock is still current.

use std::sync::Arc;

use berth_core::engine::Network;
use berth_core::reference::ImageRef;
use berth_core::spec::ImageSpec;
use berth_core::{Error, ErrorKind, Result};
use berth_registry::Existence;
use berth_workflow::lock::{Lock, LOCK_FILE};
use berth_workflow::project_units::ProjectUnits;
use berth_workflow::{units, Context, IfUnknown, Outcome, RunOptions, Unit};

use super::access::{engine_registries, EngineChoice, Registries};
use super::verify_public::verify_all;
use crate::args::{BuildArgs, NetworkArg};
use crate::config::{Config, Project};
use crate::exit::ExitStatus;
use crate::progress::{output, RunOutput};

/// Runs `berth build`.
pub async fn run(args: &BuildArgs) -> Result<ExitStatus> {
    let config = Config::load()?;
    if args.specs.is_empty() {
        let Some(project) = &config.project else {
            return Err(Error::invalid(
                "no spec files given, and no berth.yaml in this folder or above",
            )
            .with_hint("name spec files (`berth build spec.yaml`), or create a berth.yaml project (see `berth build --help`)"));
        };
        return build_project(args, &config, project).await;
    }
    if args.check {
        return Err(Error::invalid(
            "--check compares a project's berth.lock; it takes no spec files",
        )
        .with_hint("run `berth build --check` in the project folder"));
    }
    let specs = super::load_specs_with(&args.specs, &config)?;
    let labelled: Vec<(String, &ImageSpec)> = specs.iter().map(|s| (s.display_path(), s)).collect();
    let namer = Arc::new(super::namer());
    let units = units(&namer, &labelled)?;
    let choice = EngineChoice::with_config(&args.engine, &config)?;
    let context = context(namer, engine_registries(&args.engine)?, choice);
    let outcomes = berth_workflow::run(&units, &context, &options(args)).await?;
    conclude(
        args,
        &context.registries,
        &units,
        outcomes,
        serde_json::Map::new(),
        None,
    )
    .await
}

/// What a workflow run of this command works with: its output is this run's.
pub(crate) fn context(
    namer: Arc<berth_core::tag::Namer>,
    registries: Registries,
    choice: EngineChoice,
) -> Context {
    // the engine uses this run's registry client, or warns about registry flags it cannot apply
    let choice = choice.sharing(&registries);
    Context {
        namer,
        registries: Arc::new(registries),
        engine: Arc::new(choice),
        progress: Arc::new(RunOutput),
    }
}

fn options(args: &BuildArgs) -> RunOptions {
    RunOptions {
        force: args.force,
        no_push: args.no_push,
        if_unknown: match args.if_unknown {
            crate::args::IfUnknown::Fail => IfUnknown::Fail,
            crate::args::IfUnknown::Build => IfUnknown::Build,
            crate::args::IfUnknown::Skip => IfUnknown::Skip,
        },
        network: match args.network {
            NetworkArg::Default => Network::Default,
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        },
        no_cache: args.no_cache,
        jobs: usize::from(args.jobs),
        lock_dir: super::cache_dir(),
    }
}

/// Prints the results: one line on stdout per image that is in a registry (`name@digest`) or built locally
/// (`name`), or with `--json` one object with every image (and `extra`, a project's lock and tasks); failures and
/// skips go to stderr. With `--verify-public`, then asks whether a client without credentials can pull each
/// image that is in a registry. `lock_note` (what became of a project's lock) is said after the images' lines,
/// which it sums up. Returns the exit status.
async fn conclude(
    args: &BuildArgs,
    registries: &Registries,
    units: &[Unit],
    outcomes: Vec<Outcome>,
    extra: serde_json::Map<String, serde_json::Value>,
    lock_note: Option<LockNote>,
) -> Result<ExitStatus> {
    // A single spec's failure is the command's error, printed once by main; in a project it is reported with
    // the others, before what became of the lock.
    let single = units.len() == 1 && lock_note.is_none();
    for (unit, outcome) in units.iter().zip(&outcomes) {
        if !(single && matches!(outcome, Outcome::Failed(_))) {
            report(unit, outcome, !args.json);
        }
    }
    match lock_note {
        Some(LockNote::Done(line)) => output().say(&line),
        Some(LockNote::NotUpdated(line)) => output().print(&line),
        None => {}
    }
    if args.json {
        let images: Vec<serde_json::Value> = units
            .iter()
            .zip(&outcomes)
            .map(|(unit, outcome)| {
                let (status, error) = match outcome {
                    Outcome::Present { .. } => ("present", None),
                    Outcome::Pushed { .. } => ("pushed", None),
                    Outcome::Local => ("built-locally", None),
                    Outcome::Skipped(e) => ("skipped", Some(e.to_string())),
                    Outcome::Failed(e) => ("failed", Some(e.to_string())),
                };
                serde_json::json!({
                    "image": unit.name.to_string(),
                    "wanted_by": unit.wanted_by,
                    "status": status,
                    "digest": outcome.digest(),
                    "error": error,
                })
            })
            .collect();
        let mut root = extra;
        root.insert("images".into(), images.into());
        println!("{}", serde_json::Value::Object(root));
    }
    let public_refs: Vec<ImageRef> = units
        .iter()
        .zip(&outcomes)
        .filter_map(|(unit, outcome)| {
            let digest = outcome.digest()?;
            Some(ImageRef::parse(&unit.name.to_string()).map(|r| r.with_digest(digest)))
        })
        .collect::<Result<_>>()?;
    let mut status = finish(single, outcomes)?;
    if args.verify_public {
        let report = verify_all(registries, &public_refs).await;
        report.explain();
        if status == ExitStatus::Success {
            status = report.status();
        }
    }
    Ok(status)
}

/// What became of a project's `berth.lock`, said after the images' lines.
enum LockNote {
    /// Written, or already current (progress; `-q` hides it).
    Done(String),
    /// Left as it was because images are missing (always shown).
    NotUpdated(String),
}

/// Says what happened to one image: `stdout` lines for scripts unless `--json` prints them all at the end.
fn report(unit: &Unit, outcome: &Outcome, stdout: bool) {
    let name = &unit.name;
    match outcome {
        Outcome::Present { digest } => {
            output().say(&format!(
                "{name}: already in the registry, nothing to build"
            ));
            if stdout {
                println!("{name}@{digest}");
            }
        }
        Outcome::Pushed { digest } if stdout => println!("{name}@{digest}"),
        Outcome::Local if stdout => println!("{name}"),
        Outcome::Pushed { .. } | Outcome::Local => {}
        Outcome::Skipped(err) => output().print(&format!(
            "{name}: skipped, the registry could not tell whether it exists: {err}"
        )),
        Outcome::Failed(err) => output().print(&format!(
            "error: {name} ({}): {err}",
            unit.wanted_by.join(", ")
        )),
    }
}

/// The run's exit status: the first failure's (a `single` image's failure is returned as the error itself, so
/// its message and hint print as for any command), else "could not tell" for skipped images, else success.
fn finish(single: bool, outcomes: Vec<Outcome>) -> Result<ExitStatus> {
    let skipped = outcomes.iter().any(|o| matches!(o, Outcome::Skipped(_)));
    let first = outcomes.into_iter().find_map(|o| match o {
        Outcome::Failed(e) => Some(e),
        _ => None,
    });
    if let Some(first) = first {
        if single {
            return Err(first);
        }
        return Ok(ExitStatus::for_kind(first.kind()));
    }
    Ok(if skipped {
        ExitStatus::CouldNotTell
    } else {
        ExitStatus::Success
    })
}

async fn build_project(args: &BuildArgs, config: &Config, project: &Project) -> Result<ExitStatus> {
    let registry = config.registry().map(|s| s.value);
    let namer = Arc::new(super::namer());
    let project_units = ProjectUnits::new(project, &namer, registry)?;
    let units = &project_units.units;
    let default_image = project_units
        .uses_default_image()
        .then(|| config.default_image());
    let lock_path = project.dir().join(LOCK_FILE);

    if args.check {
        let wanted = project_units.wanted(default_image.map(|s| s.value));
        let differences = match Lock::read(&lock_path)? {
            None => vec![format!("{} does not exist", lock_path.display())],
            Some(lock) => lock.differences(&wanted),
        };
        if args.json {
            let answer = serde_json::json!({
                "lock": lock_path.display().to_string(),
                "current": differences.is_empty(),
                "stale": differences,
                "tasks": wanted.tasks,
            });
            println!("{answer}");
        }
        if differences.is_empty() {
            eprintln!(
                "{} is current ({} tasks)",
                lock_path.display(),
                wanted.tasks.len()
            );
            return Ok(ExitStatus::Success);
        }
        for line in &differences {
            eprintln!("stale: {line}");
        }
        eprintln!(
            "hint: run `berth build` in {} to update {LOCK_FILE}",
            project.dir().display()
        );
        return Ok(ExitStatus::Failure);
    }

    let choice = EngineChoice::with_config(&args.engine, config)?;
    let context = context(namer, engine_registries(&args.engine)?, choice);
    let registries = &*context.registries;
    let default_ref = match &default_image {
        Some(setting) => {
            Some(resolve_default(registries, &setting.value, &setting.source.to_string()).await?)
        }
        None => None,
    };
    let outcomes = berth_workflow::run(units, &context, &options(args)).await?;
    let (lock, missing) = project_units.locked(&outcomes, default_ref);
    for task in project_units.tasks() {
        if let Some(r) = lock.tasks.get(task) {
            output().say(&format!("task {task}: {r}"));
        }
    }
    let mut extra = serde_json::Map::new();
    extra.insert("tasks".into(), serde_json::json!(lock.tasks));
    if missing.is_empty() {
        let current = std::fs::read_to_string(&lock_path).is_ok_and(|text| text == lock.to_json());
        let (path, tasks) = (lock_path.display(), lock.tasks.len());
        let note = LockNote::Done(if current {
            format!("{path} is up to date ({tasks} tasks)")
        } else {
            lock.write(&lock_path)?;
            format!("wrote {path} ({tasks} tasks)")
        });
        extra.insert("lock".into(), lock_path.display().to_string().into());
        return conclude(args, registries, units, outcomes, extra, Some(note)).await;
    }
    let note = LockNote::NotUpdated(format!(
        "{} not updated: {} not in a registry ({})",
        lock_path.display(),
        missing.join(", "),
        if args.no_push {
            "--no-push"
        } else {
            "see the errors above"
        }
    ));
    extra.insert("lock".into(), serde_json::Value::Null);
    let status = conclude(args, registries, units, outcomes, extra, Some(note)).await?;
    Ok(if status == ExitStatus::Success {
        ExitStatus::Failure
    } else {
        status
    })
}

/// The default image's immutable reference, asked of its registry.
async fn resolve_default(registries: &Registries, image: &str, source: &str) -> Result<String> {
    let reference = ImageRef::parse(image)
        .map_err(|e| e.context(format!("default image {image} ({source})")))?;
    let fix = "set `default_image:` in berth.yaml (or BERTH_DEFAULT_IMAGE) to an image your registry holds";
    match registries.client.exists(&reference).await {
        Existence::Present { digest } => Ok(format!("{image}@{digest}")),
        Existence::Absent => Err(Error::new(
            ErrorKind::NotFound,
            format!("the default image {image} ({source}) is not in its registry"),
        )
        .with_hint(fix)),
        Existence::Unknown(e) => Err(e
            .context(format!(
                "cannot resolve the default image {image} ({source})"
            ))
            .with_hint(fix)),
    }
}
