//! `berth flytekit`: the flytekit plugin's way in. It reads one `ImageSpec`, as flytekit holds it in the process
//! that runs pyflyte, as JSON on standard input, and names it, asks its registry for it, or builds and pushes it,
//! with the same namer, registry check, engine choice and build as `berth build`. The answer is one JSON object on
//! standard output; a failure is an `error` object (kind, message, hint) there too, so the plugin can raise one
//! flytekit error carrying berth's words. Progress goes to standard error (the terminal pyflyte runs in).

use std::io::Read;

use berth_core::reference::ImageRef;
use berth_core::spec::{load_flytekit_json, ImageSpec};
use berth_core::{Error, ErrorKind, Result};
use berth_registry::Existence;
use serde_json::{json, Value};

use super::access::{EngineChoice, Registries};
use crate::args::{FlytekitAction, FlytekitArgs, IfUnknown};
use crate::config::Config;
use crate::exit::ExitStatus;
use crate::workflow::run::{self, Outcome, RunOptions};
use crate::workflow::units::units;

/// Runs `berth flytekit`; every failure is answered as JSON, so this never returns an error to `main`.
pub async fn run(args: &FlytekitArgs) -> Result<ExitStatus> {
    let (status, answer) = match answer(args).await {
        Ok(ok) => ok,
        Err(err) => (
            ExitStatus::for_kind(err.kind()),
            json!({ "error": error_json(&err) }),
        ),
    };
    println!("{answer}");
    Ok(status)
}

/// An error as the plugin shows it: berth's usual first line (engine, operation, message, kind) and its hint.
fn error_json(err: &Error) -> Value {
    let text = err.to_string();
    let message = match err.hint() {
        Some(hint) => text
            .strip_suffix(hint)
            .and_then(|t| t.strip_suffix("\n  hint: "))
            .unwrap_or(&text),
        None => &text,
    };
    json!({ "kind": err.kind().as_str(), "message": message, "hint": err.hint() })
}

async fn answer(args: &FlytekitArgs) -> Result<(ExitStatus, Value)> {
    let mut text = String::new();
    std::io::stdin().read_to_string(&mut text).map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the spec from standard input: {e}"),
        )
    })?;
    let cwd = std::env::current_dir().map_err(|e| {
        Error::new(
            ErrorKind::Io,
            format!("cannot read the working directory: {e}"),
        )
    })?;
    let spec = load_flytekit_json(&text, &cwd)?;
    let namer = super::namer();
    let name = namer.image_name(&spec)?;
    let image = name.to_string();
    match args.action {
        FlytekitAction::Name => Ok((ExitStatus::Success, json!({ "image": image }))),
        FlytekitAction::Exists => {
            let registries = Registries::new(&args.engine.registry)?;
            let Some(_) = &name.registry else {
                return Err(no_registry(&image));
            };
            match registries.client.exists(&ImageRef::parse(&image)?).await {
                Existence::Present { digest } => Ok((
                    ExitStatus::Success,
                    json!({ "image": image, "status": "present", "digest": digest }),
                )),
                Existence::Absent => Ok((
                    ExitStatus::Failure,
                    json!({ "image": image, "status": "absent", "digest": null }),
                )),
                Existence::Unknown(err) => Err(err),
            }
        }
        FlytekitAction::Build => build(args, &spec, &image).await,
    }
}

fn no_registry(image: &str) -> Error {
    Error::invalid(format!("{image}: the ImageSpec names no registry, so berth cannot push it where a cluster finds it"))
        .with_hint("set registry= in the ImageSpec, e.g. ImageSpec(registry=\"ghcr.io/my-org\", ...)")
}

async fn build(args: &FlytekitArgs, spec: &ImageSpec, image: &str) -> Result<(ExitStatus, Value)> {
    if spec.registry.is_none() {
        return Err(no_registry(image));
    }
    // The engine follows berth's usual precedence (BERTH_ENGINE, berth.yaml, the user file, detection); the
    // registry setting does not apply, since flytekit has named the image already.
    let config = Config::load()?;
    let choice = EngineChoice::with_config(&args.engine, &config)?;
    let registries = Registries::new(&args.engine.registry)?;
    let namer = super::namer();
    let labelled = [(spec.display_path(), spec)];
    let units = units(&namer, &labelled)?;
    let options = RunOptions {
        force: args.force,
        no_push: false,
        if_unknown: IfUnknown::Fail,
        network: berth_core::engine::Network::Default,
        no_cache: false,
        jobs: 1,
    };
    let outcome = run::run(&units, &namer, &registries, &choice, &options)
        .await?
        .pop()
        .expect("one unit, one outcome");
    let status = match &outcome {
        Outcome::Present { .. } => "present",
        Outcome::Pushed { .. } => "pushed",
        Outcome::Failed(_) | Outcome::Skipped(_) | Outcome::Local => "failed",
    };
    match outcome {
        Outcome::Present { digest } | Outcome::Pushed { digest } => Ok((
            ExitStatus::Success,
            json!({ "image": image, "status": status, "digest": digest, "reference": format!("{image}@{digest}") }),
        )),
        Outcome::Failed(err) | Outcome::Skipped(err) => Err(err),
        Outcome::Local => Err(no_registry(image)),
    }
}
