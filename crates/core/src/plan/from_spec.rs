//! Turning a spec into a build plan, following flytekit's default builder where it is sound.

use std::path::Path;

use super::copy_dir;
use super::{
    BuildPlan, ContextEntry, ContextSource, CopyStep, HelperImage, Mount, PlanSecret, RunStep, Step,
};
use crate::error::{Error, Result};
use crate::shell::quote;
use crate::spec::ImageSpec;

/// Python version micromamba installs when a spec needs micromamba but names no `python_version`.
/// flytekit uses the version of the Python process that builds; berth has none, so it pins one.
pub const DEFAULT_PYTHON_VERSION: &str = "3.12";

const USER: &str = "flytekit";
const VENV_PYTHON: &str = "/root/.venv/bin/python";
const MAMBA_PYTHON: &str = "/opt/micromamba/envs/runtime/bin/python";
const UV_CACHE: &str = "/root/.cache/uv";

/// Plans the build of `spec` on `base_image`; `spec_id` is flytekit's id of the spec (see [`crate::tag::spec_id`]).
pub fn plan_for_spec(spec: &ImageSpec, base_image: &str, spec_id: &str) -> Result<BuildPlan> {
    crate::spec::check_buildable(spec)?;
    let fail = |message: String| {
        Error::invalid(format!("{}: {message}", spec.display_path())).with_operation("plan")
    };
    if spec.cuda.is_some() || spec.cudnn.is_some() {
        return Err(fail("`cuda`/`cudnn` are not installed by the builder".into()).with_hint(
            "GPU libraries from PyPI bring their own CUDA; for conda add the `nvidia` channel; for system CUDA set a `base_image` that has it",
        ));
    }
    if spec.python_exec.is_some()
        && (!spec.conda_packages.is_empty() || !spec.conda_channels.is_empty())
    {
        return Err(fail(
            "`conda_packages`/`conda_channels` cannot be combined with `python_exec`".into(),
        ));
    }
    let mut plan = Planner {
        spec,
        steps: Vec::new(),
        context: Vec::new(),
        secrets: Vec::new(),
    };
    let uses_mamba = spec.python_exec.is_none();

    let mut helper_images = vec![HelperImage {
        alias: "uv".into(),
        reference: spec.builder_config.uv_image.clone(),
    }];
    if uses_mamba {
        helper_images.push(HelperImage {
            alias: "micromamba".into(),
            reference: spec.builder_config.micromamba_image.clone(),
        });
    }

    plan.step(Step::Workdir("/".into()));
    plan.step(Step::User("root".into()));
    if !spec.apt_packages.is_empty() {
        plan.run(
            format!(
                "apt-get update && apt-get install -y --no-install-recommends {}",
                spec.apt_packages.join(" ")
            ),
            vec![cache("apt", "/var/cache/apt")],
        );
    }
    if uses_mamba {
        plan.run(
            "[ -f /etc/ssl/certs/ca-certificates.crt ] || (mkdir -p /etc/ssl/certs/ && cp /tmp/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt)".into(),
            vec![Mount::Image {
                alias: "micromamba".into(),
                source: "/etc/ssl/certs/ca-certificates.crt".into(),
                target: "/tmp/ca-certificates.crt".into(),
            }],
        );
    }
    plan.run(
        format!("id -u {USER} || useradd --create-home --shell /bin/bash {USER}"),
        vec![],
    );
    plan.run(
        format!("chown -R {USER} /root && chown -R {USER} /home"),
        vec![],
    );

    let (python, extra_path) = if uses_mamba {
        plan.micromamba();
        (MAMBA_PYTHON, "/opt/micromamba/envs/runtime/bin")
    } else {
        (VENV_PYTHON, "/root/.venv/bin")
    };
    let mut env = vec![
        ("PATH".to_string(), format!("{extra_path}:$PATH")),
        ("UV_PYTHON".into(), python.into()),
        ("UV_COMPILE_BYTECODE".into(), "1".into()),
        ("UV_LINK_MODE".into(), "copy".into()),
        ("FLYTE_SDK_RICH_TRACEBACKS".into(), "0".into()),
        ("SSL_CERT_DIR".into(), "/etc/ssl/certs".into()),
        ("PYTHONPATH".into(), "/root".into()),
    ];
    for (key, value) in &spec.env {
        match env.iter_mut().find(|(k, _)| k == key) {
            Some(slot) => slot.1 = value.clone(),
            None => env.push((key.clone(), value.clone())),
        }
    }
    plan.step(Step::Env(env));
    plan.python_install()?;
    plan.step(Step::Env(vec![
        (
            "PATH".into(),
            "$PATH:/usr/local/nvidia/bin:/usr/local/cuda/bin".into(),
        ),
        (
            "LD_LIBRARY_PATH".into(),
            "/usr/local/nvidia/lib64:$LD_LIBRARY_PATH".into(),
        ),
    ]));
    if let Some(entrypoint) = &spec.entrypoint {
        plan.step(Step::Entrypoint(entrypoint.clone()));
    }
    plan.source_root()?;
    plan.copies()?;
    if !spec.commands.is_empty() {
        plan.run(
            spec.commands.join(" && "),
            vec![cache("uv", UV_CACHE), uv_binary()],
        );
    }
    plan.step(Step::Workdir("/root".into()));
    plan.step(Step::Shell(vec!["/bin/bash".into(), "-c".into()]));
    plan.step(Step::User(USER.into()));
    plan.run(
        "mkdir -p $HOME && echo \"export PATH=$PATH\" >> $HOME/.profile".into(),
        vec![],
    );
    plan.step(Step::Env(vec![("_F_IMG_ID".into(), spec_id.into())]));

    Ok(BuildPlan {
        base_image: base_image.to_string(),
        platform: spec.platform.clone(),
        helper_images,
        steps: plan.steps,
        context: plan.context,
        secrets: plan.secrets,
    })
}

fn cache(id: &str, target: &str) -> Mount {
    Mount::Cache {
        id: id.into(),
        target: target.into(),
    }
}

fn uv_binary() -> Mount {
    Mount::Image {
        alias: "uv".into(),
        source: "/uv".into(),
        target: "/usr/bin/uv".into(),
    }
}

struct Planner<'a> {
    spec: &'a ImageSpec,
    steps: Vec<Step>,
    context: Vec<ContextEntry>,
    secrets: Vec<PlanSecret>,
}

impl Planner<'_> {
    fn step(&mut self, step: Step) {
        self.steps.push(step);
    }

    fn run(&mut self, command: String, mounts: Vec<Mount>) {
        self.steps.push(Step::Run(RunStep { command, mounts }));
    }

    fn fail(&self, message: impl std::fmt::Display) -> Error {
        Error::invalid(format!("{}: {message}", self.spec.display_path())).with_operation("plan")
    }

    fn micromamba(&mut self) {
        let spec = self.spec;
        let version = spec
            .python_version
            .as_deref()
            .unwrap_or(DEFAULT_PYTHON_VERSION);
        let channels: String = spec
            .conda_channels
            .iter()
            .map(|c| format!(" -c {}", quote(c)))
            .collect();
        let packages: String = spec
            .conda_packages
            .iter()
            .map(|p| format!(" {}", quote(p)))
            .collect();
        let args = format!(
            "--root-prefix /opt/micromamba -c conda-forge{channels} python={version}{packages}"
        );
        self.run(
            format!(
                "micromamba config set use_lockfiles False && ( micromamba create -n runtime {args} || micromamba install -n runtime {args} ) && chown -R {USER} /opt/micromamba"
            ),
            vec![
                cache("micromamba", "/opt/micromamba/pkgs"),
                Mount::Image { alias: "micromamba".into(), source: "/usr/bin/micromamba".into(), target: "/usr/bin/micromamba".into() },
            ],
        );
    }

    fn secret_mounts(&mut self) -> Vec<Mount> {
        self.spec
            .pip_secret_mounts
            .iter()
            .enumerate()
            .map(|(i, secret)| {
                let id = format!("secret_{i}");
                self.secrets.push(PlanSecret {
                    id: id.clone(),
                    source: secret.source.clone(),
                });
                Mount::Secret {
                    id,
                    target: secret.target.clone(),
                }
            })
            .collect()
    }

    fn python_install(&mut self) -> Result<()> {
        let spec = self.spec;
        let mut args: Vec<String> = Vec::new();
        if let Some(index) = &spec.pip_index {
            args.push(format!("--index-url {}", quote(index)));
        }
        args.extend(
            spec.pip_extra_index_url
                .iter()
                .map(|url| format!("--extra-index-url {}", quote(url))),
        );
        if let Some(extra) = &spec.pip_extra_args {
            args.push(extra.clone());
        }
        let mut mounts = vec![cache("uv", UV_CACHE), uv_binary()];
        let secret_mounts = self.secret_mounts();

        let lock = spec.requirements.as_deref().and_then(|p| {
            let name = p.file_name()?.to_str()?;
            matches!(name, "uv.lock" | "poetry.lock").then_some((p, name))
        });
        if let Some((lock_path, lock_name)) = lock {
            if !spec.packages.is_empty() {
                return Err(self.fail(format!("`requirements: {lock_name}` and `packages` cannot be combined; add the packages to the lock file")));
            }
            let pyproject = lock_path.with_file_name("pyproject.toml");
            if !pyproject.is_file() {
                return Err(self.fail(format!(
                    "{lock_name} needs a pyproject.toml beside it ({} is missing)",
                    pyproject.display()
                )));
            }
            self.context.push(ContextEntry {
                path: lock_name.into(),
                source: ContextSource::File(lock_path.to_path_buf()),
            });
            self.context.push(ContextEntry {
                path: "pyproject.toml".into(),
                source: ContextSource::File(pyproject),
            });
            // Absolute targets: buildah refuses relative bind targets (BuildKit resolves them in WORKDIR).
            let binds = [lock_name, "pyproject.toml"].map(|f| Mount::Context {
                source: f.into(),
                target: format!("/root/{f}"),
            });
            self.step(Step::Workdir("/root".into()));
            if lock_name == "uv.lock" {
                args.extend(["--locked", "--no-dev", "--no-install-project"].map(String::from));
                mounts.extend(binds);
                mounts.extend(secret_mounts);
                self.run(
                    format!("uv sync {} && chown -R {USER} /root/.venv", args.join(" ")),
                    mounts,
                );
            } else {
                self.run("uv pip install poetry".into(), mounts);
                self.step(Step::Env(vec![
                    ("POETRY_CACHE_DIR".into(), "/tmp/poetry_cache".into()),
                    ("POETRY_VIRTUALENVS_IN_PROJECT".into(), "true".into()),
                ]));
                args.push("--no-root".into());
                let mut poetry_mounts = vec![cache("poetry", "/tmp/poetry_cache")];
                poetry_mounts.extend(binds);
                poetry_mounts.extend(secret_mounts);
                self.run(
                    format!(
                        "poetry install {} && chown -R {USER} /root/.venv",
                        args.join(" ")
                    ),
                    poetry_mounts,
                );
            }
            self.step(Step::Workdir("/".into()));
            self.step(Step::Env(vec![
                ("PATH".into(), "/root/.venv/bin:$PATH".into()),
                ("UV_PYTHON".into(), VENV_PYTHON.into()),
            ]));
            return Ok(());
        }

        let mut requirements: Vec<String> = Vec::new();
        if let Some(path) = &spec.requirements {
            let text = std::fs::read_to_string(path)
                .map_err(|e| Error::io(path, e).with_operation("plan"))?;
            requirements.extend(text.lines().map(|l| l.trim().to_string()));
        }
        requirements.extend(spec.packages.iter().cloned());
        if !requirements.iter().any(|r| is_flytekit(r)) && adds_flytekit(spec) {
            requirements.push("flytekit".into());
        }
        self.context.push(ContextEntry {
            path: "requirements_uv.txt".into(),
            source: ContextSource::Bytes(requirements.join("\n").into_bytes()),
        });
        args.extend(["--requirement".into(), "requirements_uv.txt".into()]);
        // The install runs in /root with python_exec (its venv is there), else in /; uv reads the file there.
        let workdir = if spec.python_exec.is_some() {
            "/root"
        } else {
            ""
        };
        mounts.push(Mount::Context {
            source: "requirements_uv.txt".into(),
            target: format!("{workdir}/requirements_uv.txt"),
        });
        mounts.extend(secret_mounts);
        match &spec.python_exec {
            // A venv the base already has (a base spec's) is kept: `uv venv` would replace it (uv 0.5) or refuse
            // (current uv), and the image would lose the base's packages.
            Some(exec) => {
                self.step(Step::Workdir("/root".into()));
                self.run(
                    format!(
                        "{{ [ -f /root/.venv/pyvenv.cfg ] || uv venv --python {exec} --system-site-packages /root/.venv; }} && uv pip install --python {VENV_PYTHON} {} && chown -R {USER} /root/.venv",
                        args.join(" ")
                    ),
                    mounts,
                );
                self.step(Step::Workdir("/".into()));
            }
            None => self.run(format!("uv pip install {}", args.join(" ")), mounts),
        }
        Ok(())
    }

    fn source_root(&mut self) -> Result<()> {
        let Some(tree) = self.spec.source_tree().map_err(|e| self.fail(e))? else {
            return Ok(());
        };
        let mut previous: Option<&str> = None;
        for file in tree.files() {
            // A module listed twice (LOADED_MODULES) is copied once, as flytekit's builder skips existing files.
            if previous.replace(&file.relative) == Some(file.relative.as_str()) {
                continue;
            }
            self.context.push(ContextEntry {
                path: format!("src/{}", file.relative),
                source: ContextSource::File(file.absolute.clone()),
            });
        }
        self.step(Step::Copy(CopyStep {
            sources: vec!["src".into()],
            destination: "/root".into(),
            chown: Some(USER.into()),
        }));
        Ok(())
    }

    fn copies(&mut self) -> Result<()> {
        for entry in &self.spec.copy {
            if entry.is_dir {
                let spec_dir = self
                    .spec
                    .dir
                    .canonicalize()
                    .map_err(|e| Error::io(&self.spec.dir, e))?;
                self.add_dir(&entry.absolute, &entry.relative, &spec_dir)?;
                self.step(Step::Copy(CopyStep {
                    sources: vec![entry.relative.clone()],
                    destination: format!("/root/{}/", entry.relative),
                    chown: Some(USER.into()),
                }));
            } else {
                self.context.push(ContextEntry {
                    path: entry.relative.clone(),
                    source: ContextSource::File(entry.absolute.clone()),
                });
                let parent = entry
                    .relative
                    .rsplit_once('/')
                    .map(|(p, _)| format!("/root/{p}/"))
                    .unwrap_or("/root/".into());
                self.step(Step::Copy(CopyStep {
                    sources: vec![entry.relative.clone()],
                    destination: parent,
                    chown: Some(USER.into()),
                }));
            }
        }
        Ok(())
    }

    /// Adds a folder's files to the context, refusing symlinks that lead outside the spec's folder or in a loop.
    fn add_dir(&mut self, dir: &Path, prefix: &str, boundary: &Path) -> Result<()> {
        let real = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let files = copy_dir::folder_files(dir, &real, prefix, boundary).map_err(|r| match r {
            copy_dir::Refusal::Io(e) => e,
            copy_dir::Refusal::Invalid { message, hint } => self.fail(message).with_hint(hint),
        })?;
        self.context.extend(files.into_iter().map(|f| ContextEntry {
            path: f.inside,
            source: ContextSource::File(f.source),
        }));
        Ok(())
    }
}

/// Whether a requirement line names flytekit (`flytekit`, `flytekit==1.2`, `flytekit~=1.2`).
fn is_flytekit(requirement: &str) -> bool {
    let name: String = requirement
        .chars()
        .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    name == "flytekit"
}

/// flytekit adds itself to every image's packages; `builder_options: {install_flytekit: false}` opts out.
fn adds_flytekit(spec: &ImageSpec) -> bool {
    let Some(node) = spec.raw_field(crate::spec::Field::BuilderOptions) else {
        return true;
    };
    let crate::yaml::Value::Map(entries) = &node.value else {
        return true;
    };
    !entries.iter().any(|(k, v)| {
        k.value.as_str() == Some("install_flytekit") && v.value == crate::yaml::Value::Bool(false)
    })
}
