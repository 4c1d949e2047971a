//! `berth exists`: ask each spec's registry whether its image is there.

use berth_core::reference::ImageRef;
use berth_core::{Error, Result};
use berth_registry::Existence;

use crate::args::ExistsArgs;
use crate::exit::ExitStatus;

/// How many registry requests run at once.
pub const CONCURRENCY: usize = 32;

/// Runs `berth exists`.
pub async fn run(args: &ExistsArgs) -> Result<ExitStatus> {
    let specs = super::specs_or_project(&args.specs, "exists")?;
    let namer = super::namer();
    let registries = super::access::registries(&args.registry)?;
    let mut names = Vec::with_capacity(specs.len());
    for (_, spec) in &specs {
        names.push(namer.image_name(spec)?);
    }
    let mut refs = Vec::new();
    let mut answers: Vec<Option<Existence>> = Vec::new();
    for name in &names {
        if name.registry.is_none() {
            answers.push(Some(Existence::Unknown(
                Error::invalid(format!(
                    "{name}: the spec names no registry, so there is nothing to ask"
                ))
                .with_hint("add `registry:` to the spec"),
            )));
        } else {
            refs.push(ImageRef::parse(&name.to_string())?);
            answers.push(None);
        }
    }
    let mut checked = registries
        .client
        .exists_many(&refs, CONCURRENCY)
        .await
        .into_iter();
    let answers: Vec<Existence> = answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| checked.next().expect("one answer per reference")))
        .collect();

    let mut status = ExitStatus::Success;
    let mut json = Vec::new();
    for (name, answer) in names.iter().zip(&answers) {
        let (state, digest, error) = match answer {
            Existence::Present { digest } => ("present", Some(digest.clone()), None),
            Existence::Absent => {
                if status == ExitStatus::Success {
                    status = ExitStatus::Failure;
                }
                ("absent", None, None)
            }
            Existence::Unknown(err) => {
                status = ExitStatus::CouldNotTell;
                ("unknown", None, Some(err.to_string()))
            }
        };
        if args.json {
            json.push(serde_json::json!({"image": name.to_string(), "status": state, "digest": digest, "error": error}));
        } else {
            match (digest, error) {
                (Some(d), _) => println!("{name}\t{state}\t{d}"),
                (_, Some(e)) => {
                    let kind = match answer {
                        Existence::Unknown(err) => err.kind().as_str(),
                        _ => "",
                    };
                    println!("{name}\t{state}\t{kind}");
                    eprintln!("error: {e}");
                }
                _ => println!("{name}\t{state}"),
            }
        }
    }
    if args.json {
        println!("{}", serde_json::Value::Array(json));
    }
    Ok(status)
}
