//! `berth push`: push the locally built images of specs.

use berth_core::reference::ImageRef;
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
        let image = ImageRef::parse(&name.to_string())?;
        let progress = output().image(&name.name);
        let pushed = engine
            .push(
                &name.to_string(),
                &registries.transfer_options(&image)?,
                &progress,
            )
            .await
            .map_err(|e| e.context(format!("pushing {name}")))?;
        println!("{name}@{}", pushed.digest);
    }
    Ok(ExitStatus::Success)
}
