//! The `berth` binary: parses the command line, runs one subcommand, and turns errors into messages a person can
//! act on and exit statuses a script can branch on.

mod args;
mod commands;
mod engine_choice;
mod env_vars;
mod exit;

use std::process::ExitCode;

use clap::Parser;

use args::{Cli, Command};
use exit::ExitStatus;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Name(args) => commands::name::run(args),
        Command::Render(args) => commands::render::run(args),
    };
    match result {
        Ok(status) => status.into(),
        Err(err) => {
            eprintln!("error: {err}");
            ExitStatus::for_kind(err.kind()).into()
        }
    }
}
