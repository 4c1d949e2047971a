//! `berth push`: push the locally built images of specs.

use berth_core::{Error, Result};

use super::access::{EngineChoice, Registries};
use crate::args::PushArgs;
use crate::exit::ExitStatus;
use crate::progress::output;

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
    let registries = Registries::new(&args.engine.registry)?;
    let engine = choice.connect().await?;
    for name in &names {
        let progress = output().image(&name.name);
        let digest = crate::workflow::run::push(&*engine, &registries, name, &progress).await?;
        println!("{name}@{digest}");
    }
    Ok(ExitStatus::Success)
}
