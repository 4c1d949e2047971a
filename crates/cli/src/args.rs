//! Command-line types (clap), kept apart from what the commands do.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Build container images from flytekit-style image specs on Docker, Podman or containerd.

A spec is a YAML file whose keys are flytekit ImageSpec fields:

    name: my-task
    registry: ghcr.io/my-org
    python_exec: /usr/bin/python3
    packages: [pandas==2.2.3]
    apt_packages: [git]
    env: {LOG_LEVEL: info}

berth names it `registry/name:tag`, with the same tag flytekit computes, so images built by berth are found by
flytekit and the other way round.";

const AFTER: &str = "Examples:
  berth name spec.yaml              print ghcr.io/my-org/my-task:<tag>
  berth render spec.yaml            print the Dockerfile berth would build
  berth render --context spec.yaml  list the files the build context would hold

Exit status: 0 success, 1 a negative answer or failed build, 2 invalid input, 3 engine unavailable,
4 registry refused the credentials, 5 temporary failure after retries, 6 other errors.";

/// berth: container images from flytekit-style specs, on any engine.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about = ABOUT, after_help = AFTER, max_term_width = 110)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// berth's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each spec's full image name, registry/name:tag (no engine, no network).
    #[command(after_help = "Examples:
  berth name spec.yaml
  berth name specs/*.yaml --json

The tag equals flytekit's ImageSpec(**yaml.safe_load(open(spec))).tag for the same file, with paths relative
to the spec's folder. Source trees are hashed once and cached by path, size and modification time.")]
    Name(NameArgs),
    /// Print the Dockerfile for a spec (no engine, no network).
    #[command(after_help = "Examples:
  berth render spec.yaml > Dockerfile
  berth render --context spec.yaml

The Dockerfile follows flytekit's default builder: apt and uv with cache mounts, a `flytekit` user,
packages installed with uv (into /root/.venv from `python_exec`, or a micromamba environment),
copied files, commands, and the spec id as the last ENV.")]
    Render(RenderArgs),
}

/// Arguments of `berth name`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Spec files.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Print a JSON array of {"spec", "image", "registry", "name", "tag"} objects.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth render`.
#[derive(Debug, Args)]
pub struct RenderArgs {
    /// Spec file.
    #[arg(value_name = "SPEC")]
    pub spec: PathBuf,
    /// List the build context's files (path in context, then source) instead of the Dockerfile.
    #[arg(long)]
    pub context: bool,
}
