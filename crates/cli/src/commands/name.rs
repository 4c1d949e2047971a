//! `berth name`: print each spec's full image name.

use berth_core::Result;

use crate::args::NameArgs;
use crate::exit::ExitStatus;

/// Runs `berth name`.
pub fn run(args: &NameArgs) -> Result<ExitStatus> {
    let specs = super::specs_or_project(&args.specs, "name")?;
    let namer = super::namer();
    let mut rows = Vec::with_capacity(specs.len());
    for (source, spec) in &specs {
        let name = namer.image_name(spec)?;
        rows.push((source, name));
    }
    if args.json {
        let items: Vec<_> = rows
            .iter()
            .map(|(path, name)| {
                serde_json::json!({
                    "spec": path,
                    "image": name.to_string(),
                    "registry": name.registry,
                    "name": name.name,
                    "tag": name.tag,
                })
            })
            .collect();
        println!("{}", serde_json::Value::Array(items));
    } else {
        for (_, name) in rows {
            println!("{name}");
        }
    }
    Ok(ExitStatus::Success)
}
