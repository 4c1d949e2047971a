//! `berth build`: name every spec, ask the registries, build only what is missing, push it, print name@digest.

use berth_core::engine::{BuildOptions, ContainerEngine, ContainerEngineExt, Network};
use berth_core::order::build_order;
use berth_core::plan::plan;
use berth_core::reference::ImageRef;
use berth_core::spec::ImageSpec;
use berth_core::tag::ImageName;
use berth_core::{Error, ErrorKind, Result};
use berth_registry::Existence;

use super::access::{EngineChoice, Registries};
use super::exists::CONCURRENCY;
use crate::args::{BuildArgs, IfUnknown, NetworkArg};
use crate::exit::ExitStatus;
use crate::progress::StderrProgress;

/// What to do with one image.
enum Action {
    /// The registry has it: report its digest, no engine work.
    Present(String),
    /// Build it (and push unless told not to).
    Build,
    /// The registry could not tell and the user chose to skip.
    Skip(Error),
}

/// Runs `berth build`.
pub async fn run(args: &BuildArgs) -> Result<ExitStatus> {
    let choice = EngineChoice::new(&args.engine)?;
    let specs = super::load_specs(&args.specs)?;
    let order = build_order(&specs);
    let namer = super::namer();
    let names: Vec<ImageName> = order
        .iter()
        .map(|s| namer.image_name(s))
        .collect::<Result<_>>()?;
    let registries = Registries::new(&args.engine.registry)?;

    let actions = decide(args, &names, &registries).await?;
    let mut engine: Option<Box<dyn ContainerEngine>> = None;
    let mut status = ExitStatus::Success;
    for ((spec, name), action) in order.iter().zip(&names).zip(actions) {
        match action {
            Action::Present(digest) => {
                eprintln!("{name}: already in the registry, nothing to build");
                println!("{}@{digest}", name);
            }
            Action::Skip(err) => {
                eprintln!("{name}: skipped, the registry could not tell whether it exists: {err}");
                status = ExitStatus::CouldNotTell;
            }
            Action::Build => {
                if engine.is_none() {
                    engine = Some(choice.connect().await?);
                }
                let engine = engine.as_deref().expect("connected above");
                let reference = build_one(args, engine, &registries, &namer, spec, name).await?;
                println!("{reference}");
            }
        }
    }
    Ok(status)
}

/// Asks the registries about every image at once, and decides what to do with each.
async fn decide(
    args: &BuildArgs,
    names: &[ImageName],
    registries: &Registries,
) -> Result<Vec<Action>> {
    if args.force {
        return Ok(names.iter().map(|_| Action::Build).collect());
    }
    let refs: Vec<ImageRef> = names
        .iter()
        .filter(|n| n.registry.is_some())
        .map(|n| ImageRef::parse(&n.to_string()))
        .collect::<Result<_>>()?;
    let mut answers = registries
        .client
        .exists_many(&refs, CONCURRENCY)
        .await
        .into_iter();
    let mut actions = Vec::with_capacity(names.len());
    for name in names {
        if name.registry.is_none() {
            // Nothing to ask and nowhere to push: build locally (flytekit does the same with a local daemon).
            actions.push(Action::Build);
            continue;
        }
        let action = match answers.next().expect("one answer per reference") {
            Existence::Present { digest } => Action::Present(digest),
            Existence::Absent => Action::Build,
            Existence::Unknown(err) => match args.if_unknown {
                IfUnknown::Fail => {
                    let fix = match err.kind() {
                        ErrorKind::Unauthorized => format!(
                            "log in with `berth login {}` (or docker login), or set BERTH_REGISTRY_USERNAME/BERTH_REGISTRY_PASSWORD",
                            name.registry.as_deref().unwrap_or_default()
                        ),
                        ErrorKind::Temporary => "check that the registry is reachable, then retry".to_string(),
                        _ => "check the registry address; for a registry with a private CA pass --ca-file, for plain HTTP --insecure-registry".to_string(),
                    };
                    return Err(err
                        .context(format!("cannot tell whether {name} exists"))
                        .with_hint(format!(
                            "{fix}; or pass --if-unknown build|skip to go on without knowing"
                        )));
                }
                IfUnknown::Build => Action::Build,
                IfUnknown::Skip => Action::Skip(err),
            },
        };
        actions.push(action);
    }
    Ok(actions)
}

async fn build_one(
    args: &BuildArgs,
    engine: &dyn ContainerEngine,
    registries: &Registries,
    namer: &berth_core::tag::Namer,
    spec: &ImageSpec,
    name: &ImageName,
) -> Result<String> {
    let plan = plan(namer, spec)?;
    engine.check_plan(&plan).await?;
    let mut credentials = Vec::new();
    let pulls = std::iter::once(plan.base_image.as_str())
        .chain(plan.helper_images.iter().map(|h| h.reference.as_str()));
    for reference in pulls {
        let host = ImageRef::parse(reference)?.registry;
        if credentials
            .iter()
            .any(|c: &berth_core::engine::Credentials| c.registry == host)
        {
            continue;
        }
        if let Some(found) = registries.credentials(&host)? {
            credentials.push(found);
        }
    }
    let options = BuildOptions {
        tags: vec![name.to_string()],
        credentials,
        network: match args.network {
            NetworkArg::Default => Network::Default,
            NetworkArg::Host => Network::Host,
            NetworkArg::None => Network::None,
        },
        no_cache: args.no_cache,
    };
    eprintln!("{name}: building on {}", engine.name());
    let progress = StderrProgress::new(&name.name, false);
    let built = engine
        .build(&plan, &options, &progress)
        .await
        .map_err(|e| e.context(format!("building {name}")))?;
    if args.no_push || name.registry.is_none() {
        if name.registry.is_none() {
            eprintln!(
                "{name}: built locally ({}); the spec names no registry, so it is not pushed",
                built.id
            );
        } else {
            eprintln!(
                "{name}: built locally ({}), not pushed (--no-push)",
                built.id
            );
        }
        return Ok(name.to_string());
    }
    let image = ImageRef::parse(&name.to_string())?;
    let transfer = registries.transfer_options(&image)?;
    eprintln!("{name}: pushing");
    let pushed = engine.push(&name.to_string(), &transfer, &progress).await.map_err(|e| {
        let hint = if e.kind() == ErrorKind::Unauthorized {
            Some(format!("log in with `berth login {}` (or docker login), or set BERTH_REGISTRY_USERNAME/BERTH_REGISTRY_PASSWORD", image.registry))
        } else {
            None
        };
        let e = e.context(format!("pushing {name}"));
        match hint {
            Some(h) => e.with_hint(h),
            None => e,
        }
    })?;
    Ok(format!("{}@{}", name, pushed.digest))
}
