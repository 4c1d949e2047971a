//! `berth push`: push the locally built images of specs.

use berth_core::engine::ContainerEngineExt;
use berth_core::{Error, ErrorKind, Result};

use super::access::{engine_registries, EngineChoice};
use crate::args::PushArgs;
use crate::exit::ExitStatus;
use crate::progress::{output, RunOutput};

/// Runs `berth push`.
pub async fn run(args: &PushArgs) -> Result<ExitStatus> {
    let choice = EngineChoice::new(&args.engine)?;
    let specs = super::load_specs(&args.specs)?;
    let namer = super::namer();
    let names = specs
        .iter()
        .map(|s| namer.image_name(s))
        .collect::<Result<Vec<_>>>()?;
    if let Some(name) = names.iter().find(|n| n.registry.is_none()) {
        return Err(
            Error::invalid(format!("{name}: the spec names no registry to push to"))
                .with_hint("add `registry:` to the spec"),
        );
    }
    let registries = engine_registries(&args.engine)?;
    let choice = choice.sharing(&registries);
    let engine = choice.connect().await?;
    for name in &names {
        let reference = name.to_string();
        if !engine.has_image(&reference).await? {
            return Err(not_built_here(&choice, engine.name(), &reference, &args.specs).await);
        }
        let progress = output().image(&name.name);
        let digest =
            berth_workflow::push(&*engine, &registries, name, &RunOutput, &progress).await?;
        println!("{name}@{digest}");
    }
    Ok(ExitStatus::Success)
}

/// `reference` is not on the chosen engine: say which engine has it (a `--no-push` build elsewhere), or how to
/// make it.
async fn not_built_here(
    choice: &EngineChoice,
    engine: &str,
    reference: &str,
    specs: &[std::path::PathBuf],
) -> Error {
    let others = choice.others_with(reference).await;
    let specs = specs
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(" ");
    let hint = match others.first() {
        Some(other) => format!("{other} has it: `berth push --engine {other} {specs}`"),
        None => format!(
            "build it first (`berth build --no-push {specs}`), or pass --engine with the engine it was built on"
        ),
    };
    let held = match others.as_slice() {
        [] => String::new(),
        kinds => format!(
            " (it is on {})",
            kinds
                .iter()
                .map(|k| k.name())
                .collect::<Vec<_>>()
                .join(" and ")
        ),
    };
    Error::new(
        ErrorKind::NotFound,
        format!("{reference} is not an image on {engine}{held}"),
    )
    .with_operation("push")
    .with_hint(hint)
}
