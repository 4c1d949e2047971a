//! The `berth` binary: parses the command line, runs one subcommand, and turns errors into messages a person can
//! act on and exit statuses a script can branch on.

mod args;
mod commands;
mod engine_choice;
mod engines;
mod env_vars;
mod exit;
mod progress;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Name(args) => commands::name::run(args),
        Command::Render(args) => commands::render::run(args),
        other => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => runtime.block_on(run_async(other)),
            Err(e) => Err(berth_core::Error::new(
                berth_core::ErrorKind::Io,
                format!("cannot start the async runtime: {e}"),
            )),
        },
    };
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err}");
            ExitStatus::for_kind(err.kind()).into()
        }
    }
}

async fn run_async(command: &Command) -> berth_core::Result<ExitStatus> {
    match command {
        Command::Build(args) => commands::build::run(args).await,
        Command::Exists(args) => commands::exists::run(args).await,
        Command::Push(args) => commands::push::run(args).await,
        Command::Login(args) => commands::login::run(args).await,
        Command::Engines(args) => commands::engines::run(args).await,
        Command::Name(_) | Command::Render(_) => unreachable!("run synchronously in main"),
    }
}
