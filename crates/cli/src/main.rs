//! The `berth` binary: parses the command line, runs one subcommand, and turns errors into messages a person can
//! act on and exit statuses a script can branch on.

mod args;
mod commands;
mod config;
mod doctor;
mod env_vars;
mod exit;
mod help;
mod memory;
mod progress;

use std::process::ExitCode;

use args::Command;
use exit::ExitStatus;

fn main() -> ExitCode {
    // before any thread: the digest readers and the runtime's threads then share one malloc arena
    memory::one_arena();
    let cli = help::parse();
    progress::init(if cli.quiet {
        progress::Verbosity::Quiet
    } else if cli.verbose {
        progress::Verbosity::Verbose
    } else {
        progress::Verbosity::Normal
    });
    let result = match &cli.command {
        Command::Name(args) => commands::name::run(args),
        Command::Render(args) => commands::render::run(args),
        Command::Config(args) => commands::config::run(args),
        other => match tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let result = runtime.block_on(until_interrupted(run_async(other)));
                // Dropping the runtime drops what an interruption left running (a project build's image tasks).
                // A containerd build dropped midway cleans up on a thread of its own instead of holding up the
                // others; berth waits for those threads here, so it exits leaving nothing behind.
                drop(runtime);
                berth_engines::wait_for_background_work();
                result
            }
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

/// Runs `work` until it ends or the user interrupts (Ctrl-C, SIGTERM). Interrupting drops `work` (and with it a
/// project build's image tasks), which closes its connections: BuildKit and buildah stop the build, and nothing
/// half-pushed is tagged (the manifest goes last).
async fn until_interrupted(
    work: impl std::future::Future<Output = berth_core::Result<ExitStatus>>,
) -> berth_core::Result<ExitStatus> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut terminate = signal(SignalKind::terminate()).map_err(|e| {
        berth_core::Error::new(
            berth_core::ErrorKind::Io,
            format!("cannot watch for SIGTERM: {e}"),
        )
    })?;
    tokio::select! {
        result = work => result,
        _ = tokio::signal::ctrl_c() => {
            eprintln!("interrupted: stopped (berth removes what it started; every engine stops the build)");
            Ok(ExitStatus::Interrupted)
        }
        _ = terminate.recv() => {
            eprintln!("terminated: stopped (berth removes what it started; every engine stops the build)");
            Ok(ExitStatus::Interrupted)
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
        Command::Doctor(args) => commands::doctor::run(args).await,
        Command::VerifyPublic(args) => commands::verify_public::run(args).await,
        Command::Flytekit(args) => commands::flytekit::run(args).await,
        Command::Name(_) | Command::Render(_) | Command::Config(_) => {
            unreachable!("run synchronously in main")
        }
    }
}
