//! Command-line types (clap), kept apart from what the commands do. Texts that name the engines carry tokens
//! (`@ENGINES@`) that [`crate::help`] fills in from the engine table.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

const ABOUT: &str = "Build container images from flytekit-style image specs on @ENGINES_OR@.

A spec is a YAML file whose keys are flytekit ImageSpec fields:

    name: my-task
    registry: ghcr.io/my-org
    python_exec: /usr/bin/python3
    packages: [pandas==2.2.3]
    apt_packages: [git]
    env: {LOG_LEVEL: info}

berth names it `registry/name:tag`, with the same tag flytekit computes, so images built by berth are found by flytekit and the other way round.";

const AFTER: &str = "Examples:
  berth name spec.yaml              print ghcr.io/my-org/my-task:<tag>
  berth render spec.yaml            print the Dockerfile berth would build
  berth exists spec.yaml            ask the registry whether the image is there
  berth build spec.yaml             check, build what is missing, push, print name@sha256:...
  berth login ghcr.io -u me --password-stdin < token.txt
  berth engines                     which engines are reachable here
  berth doctor                      why berth cannot build here, and the commands that fix it
  berth verify-public IMAGE...      can a cluster without credentials pull these images

Engine: --engine, else BERTH_ENGINE, else `engine:` in berth.yaml (searched upward), else the first reachable socket of @ENGINES@.

Exit status: 0 success, 1 a negative answer, a failed build or an unsupported request, 2 invalid input, 3 engine unavailable, 4 registry refused the credentials, 5 temporary failure after retries, 6 other errors, 130 interrupted (Ctrl-C or SIGTERM).";

/// berth: container images from flytekit-style specs, on any engine.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about = ABOUT, after_help = AFTER, max_term_width = 110)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
    /// Show only results and errors.
    #[arg(long, short = 'q', global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Show every line of build output, also on a terminal (where berth otherwise shows one live line per image).
    #[arg(long, short = 'v', global = true)]
    pub verbose: bool,
}

/// berth's subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Print each spec's full image name, registry/name:tag (no engine, no network).
    #[command(after_help = "Examples:
  berth name spec.yaml
  berth name specs/*.yaml --json
  berth name                        in a berth.yaml project: every image of the project

The tag equals flytekit's ImageSpec(**yaml.safe_load(open(spec))).tag for the same file, with paths relative to the spec's folder. Source trees are hashed once and cached by path, size and modification time.")]
    Name(NameArgs),
    /// Print the Dockerfile for a spec (no engine, no network).
    #[command(after_help = "Examples:
  berth render spec.yaml > Dockerfile
  berth render --context spec.yaml

The Dockerfile follows flytekit's default builder: apt and uv with cache mounts, a `flytekit` user, packages installed with uv (into /root/.venv from `python_exec`, or a micromamba environment), copied files, commands, and the spec id as the last ENV.

Spec fields (flytekit ImageSpec names): name, python_version, builder, source_root, env, registry, packages, conda_packages, conda_channels, requirements, apt_packages, cuda, cudnn, base_image, platform, pip_index, pip_extra_index_url, pip_secret_mounts, pip_extra_args, registry_config, entrypoint, commands, tag_format, source_copy_mode, copy, python_exec, runtime_packages, builder_options, builder_config. Paths are relative to the spec file; base_image may be {spec: other.yaml}.")]
    Render(RenderArgs),
    /// Check the registry, build the specs whose images are missing, push them, print name@digest.
    #[command(after_help = "Examples:
  berth build spec.yaml
  berth build --engine podman app.yaml worker.yaml
  berth build --no-push spec.yaml       build locally only
  berth build --force spec.yaml         build and push even if the registry has the image
  berth build --verify-public spec.yaml then check that a cluster without credentials can pull each image

For each spec: name it, ask its registry whether the image exists (one HEAD request), and only if not, build it with the engine and push it. A base_image that is another spec is handled first. Images that exist cost no engine work. If the registry cannot tell (bad credentials, unreachable), berth stops with an error unless --if-unknown says otherwise; it never assumes the image exists. A failed image stops only the images built on it; the others still finish.

In a project (a berth.yaml in this folder or above), `berth build` with no spec files builds every image the project names and writes berth.lock next to berth.yaml, mapping each task to registry/name:tag@sha256:... (tasks with no image get the default image, resolved to its digest). `berth build --check` fails when berth.lock no longer matches the specs (for CI). A berth.yaml:

    engine: podman                      # @ENGINE_CHOICES@ | auto
    registry: ghcr.io/my-org            # for specs that name none
    default_image: ghcr.io/my-org/flytekit:py3.12-1.16.31   # else flytekit's default
    images:
      base: specs/base.yaml             # a spec file (relative to berth.yaml)
      trainer:                          # or an inline spec; name it (else flytekit's `flytekit`)
        name: trainer
        base_image: {spec: specs/base.yaml}
        packages: [torch]
    tasks:
      prepare: base
      train: trainer
      report:                           # no image: the default image")]
    Build(BuildArgs),
    /// Ask the registry whether each spec's image exists (exit 0 all exist, 1 some absent, 2 could not tell).
    #[command(after_help = "Examples:
  berth exists spec.yaml
  berth exists specs/*.yaml --json
  berth exists                      in a berth.yaml project: every image of the project

Prints one line per spec, tab-separated: the image, then `present` and its digest, `absent`, or `unknown` and the kind of failure (the full reason goes to standard error). Exit status: 0 all present, 1 some absent, 2 some could not be checked.")]
    Exists(ExistsArgs),
    /// Push the locally built images of specs to their registries.
    #[command(after_help = "Examples:
  berth build --no-push spec.yaml && berth push spec.yaml")]
    Push(PushArgs),
    /// Store registry credentials where Docker keeps them (credsStore helper or ~/.docker/config.json).
    #[command(after_help = "Examples:
  echo \"$TOKEN\" | berth login ghcr.io --username me --password-stdin
  BERTH_REGISTRY_PASSWORD=... berth login 127.0.0.1:5000 -u berth

The credentials are checked against the registry before they are stored. berth also reads credentials from credHelpers/credsStore, Podman's auth.json, and BERTH_REGISTRY_USERNAME/BERTH_REGISTRY_PASSWORD (for CI).")]
    Login(LoginArgs),
    /// List the engines berth can reach here: version, endpoint, rootless or not.
    #[command(after_help = "Examples:
  berth engines")]
    Engines(EnginesArgs),
    /// Show the settings berth would use here (engine, registry, default image, project and user files) and where
    /// each came from.
    #[command(after_help = CONFIG_AFTER)]
    Config(ConfigArgs),
    /// Find out why berth cannot build here, and print the command that fixes each problem.
    #[command(after_help = DOCTOR_AFTER)]
    Doctor(DoctorArgs),
    /// Check that a client without credentials (a cluster without pull secrets) can pull each image.
    #[command(after_help = VERIFY_PUBLIC_AFTER)]
    VerifyPublic(VerifyPublicArgs),
    /// Name, check or build one flytekit ImageSpec read as JSON from standard input (used by the flytekit plugin).
    #[command(after_help = FLYTEKIT_AFTER)]
    Flytekit(FlytekitArgs),
}

const FLYTEKIT_AFTER: &str = "The flytekit plugin (pip install berth; see the README's \"With flytekit\") runs this in the pyflyte process, sending the ImageSpec's dataclass fields as flytekit holds them: {\"fields\": {...}, \"source_files\": [...] or null}. Relative paths resolve against the working directory, as in flytekit; source_files lists what LOADED_MODULES copies. No project or user registry applies: the image is named exactly as flytekit names it.

Prints one JSON object: {\"image\"} for name; {\"image\", \"status\": \"present\"|\"absent\", \"digest\"} for exists; {\"image\", \"status\": \"present\"|\"pushed\", \"digest\", \"reference\"} for build; or {\"error\": {\"kind\", \"message\", \"hint\"}}. Progress goes to standard error. Exit status as for the other commands (exists: 1 absent).

serve answers such requests one per line, `name|exists|build [--force] SPEC-JSON`, one JSON line each, until standard input closes; the plugin keeps one berth per pyflyte run so that registry connections and tokens are reused.";

/// What `berth flytekit` does with the spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FlytekitAction {
    /// Print the image name.
    Name,
    /// Ask the registry whether the image is there.
    Exists,
    /// Build and push the image unless the registry has it.
    Build,
    /// Answer requests, one per line (`ACTION [--force] SPEC-JSON`), until standard input closes.
    Serve,
}

/// Arguments of `berth flytekit`.
#[derive(Debug, Args)]
pub struct FlytekitArgs {
    /// What to do with the spec read from standard input.
    #[arg(value_enum)]
    pub action: FlytekitAction,
    /// Engine and registry access.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Build and push even if the registry has the image (flytekit's ImageSpec.force_push()).
    #[arg(long)]
    pub force: bool,
}

const VERIFY_PUBLIC_AFTER: &str = "The cluster that runs tasks usually pulls without the builder's credentials, so an image in the registry may still fail to start there. This asks each image's registry for its manifest as such a client would: no credentials at all (not BERTH_REGISTRY_USERNAME/PASSWORD, Docker's config.json or Podman's auth.json, even when they hold a login for that registry), following the registry's token challenge anonymously, as Docker does for public images on Docker Hub and GHCR.

Prints one line per image, tab-separated: the image (as berth reads it: docker.io/library/ for Docker Hub short names), then `public` and the digest an anonymous client is served, `private`, `not-found`, or `unknown` and the kind of failure. For every image that cannot be pulled, standard error says what the registry answered and what to do there: GHCR's package settings (Change visibility), Docker Hub's or Quay's repository visibility, an allUsers reader binding on Artifact Registry or GCR, ECR Public instead of private ECR; elsewhere, give the cluster pull credentials (imagePullSecrets) or make the repository public in the registry's settings. GHCR and Docker Hub refuse anonymous clients the same way whether a repository is private or missing, so there `private` can also mean the image does not exist.

Examples:
  berth verify-public ghcr.io/my-org/my-task:1a2b3c
  berth verify-public $(berth name spec.yaml)              the image a spec names
  berth verify-public --json ghcr.io/my-org/a:1 docker.io/me/b:2
  berth verify-public ghcr.io/my-org/my-task@sha256:...    exactly the pushed manifest
  berth build --verify-public spec.yaml                    build, push, then check the same way

Exit status: 0 every image is public, 1 some is private or not found, 2 some could not be checked (network, registry errors) or a reference is invalid.";

const CONFIG_AFTER: &str = "Precedence, first wins: command-line flag, environment (BERTH_ENGINE, BERTH_REGISTRY, BERTH_DEFAULT_IMAGE; @ENGINE_ENV@ for connections), the project file (berth.yaml in this folder or above), the user file ($BERTH_CONFIG, else $XDG_CONFIG_HOME/berth/config.yaml, else ~/.config/berth/config.yaml), detection, built-in default.

The user file takes the same settings as a project file, without images and tasks:

    engine: {name: podman, podman: {socket: unix:///run/user/1000/podman/podman.sock}}
    registry: ghcr.io/my-org
    python_version: \"3.11\"            # for flytekit's default image, py3.11

The default image, unless set, is flytekit's: cr.flyte.org/flyteorg/flytekit:py{X.Y}-1.16.31, for the Python of python3 on PATH.

Examples:
  berth config
  berth config --json | jq -r .default_image.value";

const DOCTOR_AFTER: &str = "What is checked:

  Engines: @ENGINES@, each reachable or not, with its version, rootless or rootful, and socket. For one that does not answer, why: no socket (and the command that starts the service), permission denied (and the group to join), or a socket nobody answers on. Then whether the engine berth would build with (--engine, BERTH_ENGINE, berth.yaml, else the first socket found) is one that works.

  @ENGINE_CHECKS@Registry, with --registry HOST: which credentials berth would use for HOST and where they come from (BERTH_REGISTRY_USERNAME/PASSWORD, Docker's config.json auths, credHelpers or credsStore, Podman's auth.json), never the secret; then a login with them, as `berth login` does.

Each line says ok, warning, problem or skipped; every problem has a `fix:` line with the command that fixes it.

Examples:
  berth doctor
  berth doctor --registry ghcr.io
  berth doctor --engine podman           check the engine you will build with
  berth doctor --json | jq -r '.problems[].fix'
  sudo -iu builder berth doctor         check rootless Podman for the user `builder`

Exit status: 0 no problem (berth can build here), 1 some problem.";

/// How to reach an engine and registries; shared by the commands that use an engine.
#[derive(Debug, Args, Clone)]
pub struct EngineArgs {
    /// Engine: @ENGINES@ or auto [env: BERTH_ENGINE].
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Who pushes Docker and Podman images: berth (reads the image from the engine's storage when the engine
    /// runs on this machine and berth may read it, else from its export; compresses on every core), berth from
    /// the export only (export), or the engine (its own push: for registries only the daemon is set up for,
    /// such as mirrors, daemon-side credentials or certificates).
    #[arg(long, value_name = "WHO", value_enum, env = crate::env_vars::EnvVars::BERTH_PUSH_VIA, default_value_t = PushVia::Berth)]
    pub push_via: PushVia,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Who pushes images built on Docker or Podman (containerd images are always pushed by berth).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum PushVia {
    /// berth's registry client, from the engine's storage when it may read it, else from its export.
    #[default]
    Berth,
    /// berth's registry client, from the engine's image export only.
    Export,
    /// The engine's own push (`docker push`, `podman push`).
    Engine,
}

/// How to reach registries.
#[derive(Debug, Args, Clone, Default)]
pub struct RegistryArgs {
    /// Registry allowed over plain HTTP / unverified TLS (loopback registries always are). Repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST[:PORT]")]
    pub insecure_registries: Vec<String>,
    /// Extra CA certificate file (PEM) to trust for registries.
    #[arg(long, value_name = "FILE")]
    pub ca_file: Option<PathBuf>,
}

/// What to do when the registry cannot say whether an image exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum IfUnknown {
    /// Stop with an error (default): never guess.
    Fail,
    /// Build and push it anyway.
    Build,
    /// Skip it, reporting it as unchecked.
    Skip,
}

/// How RUN steps reach the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum NetworkArg {
    /// The engine's default network.
    Default,
    /// The host's network (rootless engines without working network namespaces need it).
    Host,
    /// No network.
    None,
}

/// Arguments of `berth build`.
#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Spec files; none inside a project builds every image of its berth.yaml and writes berth.lock.
    #[arg(value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Engine and registry access.
    #[command(flatten)]
    pub engine: EngineArgs,
    /// Build locally and do not push.
    #[arg(long)]
    pub no_push: bool,
    /// Build (and push) even if the registry already has the image.
    #[arg(long)]
    pub force: bool,
    /// When the registry cannot tell whether an image exists.
    #[arg(long, value_enum, default_value = "fail")]
    pub if_unknown: IfUnknown,
    /// Network for RUN steps.
    #[arg(long, value_enum, default_value = "default")]
    pub network: NetworkArg,
    /// Ignore the engine's build cache.
    #[arg(long)]
    pub no_cache: bool,
    /// Only check that berth.lock matches what the project's specs name now (offline; exit 1 if stale).
    #[arg(long)]
    pub check: bool,
    /// Builds at a time (pushes overlap with the next builds regardless).
    #[arg(long, short = 'j', default_value_t = 2, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub jobs: u16,
    /// After building (or finding) each image, check that a client without credentials, such as a cluster
    /// without pull secrets, can pull it, as `berth verify-public` does; exit 1 if one cannot.
    #[arg(long, conflicts_with = "no_push")]
    pub verify_public: bool,
    /// Print one JSON object: {"images": [{"image", "wanted_by", "status", "digest", "error"}]}, plus "tasks"
    /// and "lock" for a project (progress still goes to standard error).
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth verify-public`.
#[derive(Debug, Args)]
pub struct VerifyPublicArgs {
    /// Image references: registry/repository:tag, or @sha256:... for an exact manifest.
    #[arg(required = true, value_name = "IMAGE")]
    pub images: Vec<String>,
    /// Registry access (plain HTTP and CA settings; no credentials are ever sent).
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print a JSON array of {"image", "status", "digest", "detail", "error", "fix"} objects.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth exists`.
#[derive(Debug, Args)]
pub struct ExistsArgs {
    /// Spec files; none in a berth.yaml project: every image of the project.
    #[arg(value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Registry access.
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Print a JSON array of {"image", "status", "digest", "error"} objects.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Spec files whose images were built locally.
    #[arg(required = true, value_name = "SPEC")]
    pub specs: Vec<PathBuf>,
    /// Engine and registry access.
    #[command(flatten)]
    pub engine: EngineArgs,
}

/// Arguments of `berth login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host, e.g. ghcr.io or 127.0.0.1:5000.
    pub registry: String,
    /// User name [env: BERTH_REGISTRY_USERNAME].
    #[arg(long, short = 'u')]
    pub username: Option<String>,
    /// Read the password or token from standard input (else BERTH_REGISTRY_PASSWORD).
    #[arg(long)]
    pub password_stdin: bool,
    /// Docker config file to write (default: $DOCKER_CONFIG/config.json or ~/.docker/config.json).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Registry access.
    #[command(flatten)]
    pub access: RegistryArgs,
}

/// Arguments of `berth config`.
#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// Show the engine this flag would choose: @ENGINES@ or auto.
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth engines`.
#[derive(Debug, Args)]
pub struct EnginesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Also check the credentials berth would use for this registry, and log in with them (default: the
    /// configured registry: BERTH_REGISTRY, berth.yaml, the user file).
    #[arg(long, value_name = "HOST")]
    pub registry: Option<String>,
    /// The engine you mean to build with: @ENGINES@ or auto [env: BERTH_ENGINE].
    #[arg(long, value_name = "ENGINE")]
    pub engine: Option<String>,
    /// Registry access (for --registry).
    #[command(flatten)]
    pub access: RegistryArgs,
    /// Print one JSON object: {"engines", "rootless", "registry", "problems": [{"check", "message", "fix"}], ...}.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `berth name`.
#[derive(Debug, Args)]
pub struct NameArgs {
    /// Spec files; none in a berth.yaml project: every image of the project.
    #[arg(value_name = "SPEC")]
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

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_definition_is_consistent() {
        // clap checks for clashing flags (a global -q and a subcommand's -q) only when asked.
        crate::help::command().debug_assert();
    }
}
