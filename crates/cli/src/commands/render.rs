//! `berth render`: print the Dockerfile (or the context listing) for a spec.

use berth_core::plan::{plan, ContextSource};
use berth_core::render::dockerfile;
use berth_core::spec::load_spec;
use berth_core::Result;

use crate::args::RenderArgs;
use crate::exit::ExitStatus;

/// Runs `berth render`.
pub fn run(args: &RenderArgs) -> Result<ExitStatus> {
    let spec = load_spec(&args.spec)?;
    let plan = plan(&super::namer(), &spec)?;
    if args.context {
        for entry in &plan.context {
            match &entry.source {
                ContextSource::File(path) => println!("{}\t{}", entry.path, path.display()),
                ContextSource::Bytes(bytes) => {
                    println!("{}\t(generated, {} bytes)", entry.path, bytes.len())
                }
            }
        }
    } else {
        print!("{}", dockerfile(&plan));
    }
    Ok(ExitStatus::Success)
}
