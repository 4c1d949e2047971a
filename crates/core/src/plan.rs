//! The engine-neutral build plan: a base image, ordered steps and the files the build needs.
//!
//! Docker and Podman render a plan to a Dockerfile ([`crate::render`]); containerd executes it step by step.
//! [`plan_for_spec`] turns a spec into a plan following flytekit's default builder: apt and uv with cache mounts,
//! a `flytekit` user, packages through uv into a venv (`python_exec`) or a micromamba environment, copied files,
//! commands, and the spec id as the very last `ENV` so a changed tag does not invalidate the layer cache.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::spec::{BaseImage, ImageSpec, DEFAULT_BASE_IMAGE};
use crate::tag::{spec_id, Namer};

/// Everything an engine needs to build an image.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildPlan {
    /// The image the build starts from.
    pub base_image: String,
    /// Target platform, e.g. `linux/amd64`.
    pub platform: String,
    /// Other images that steps take files from (e.g. uv), by alias.
    pub helper_images: Vec<HelperImage>,
    /// The steps, in order.
    pub steps: Vec<Step>,
    /// The files of the build context.
    pub context: Vec<ContextEntry>,
    /// Secrets the steps mount, by id.
    pub secrets: Vec<PlanSecret>,
}

/// An image a step mounts files from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperImage {
    /// The name steps use for it.
    pub alias: String,
    /// The image reference.
    pub reference: String,
}

/// One build step.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Run a shell command.
    Run(RunStep),
    /// Copy files from the context.
    Copy(CopyStep),
    /// Set environment variables (values may refer to earlier ones as `$NAME`).
    Env(Vec<(String, String)>),
    /// Set the working directory.
    Workdir(String),
    /// Set the user.
    User(String),
    /// Set the entrypoint (empty clears it).
    Entrypoint(Vec<String>),
    /// Set the shell RUN steps use.
    Shell(Vec<String>),
    /// Set labels.
    Label(Vec<(String, String)>),
}

impl Step {
    /// The step as a Dockerfile line, for progress and image history: every engine numbers and names a plan's
    /// steps the same way (`step 3/14: RUN ...`), helper stages and `FROM` not counted.
    pub fn describe(&self) -> String {
        let pairs = |vars: &[(String, String)]| {
            vars.iter()
                .map(|(k, v)| format!("{k}={}", serde_json::json!(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        match self {
            Step::Run(run) => format!("RUN {}", run.command),
            Step::Copy(copy) => {
                let chown = copy
                    .chown
                    .as_ref()
                    .map(|c| format!("--chown={c} "))
                    .unwrap_or_default();
                let mut args = copy.sources.clone();
                args.push(copy.destination.clone());
                format!("COPY {chown}{}", serde_json::json!(args))
            }
            Step::Env(vars) => format!("ENV {}", pairs(vars)),
            Step::Label(labels) => format!("LABEL {}", pairs(labels)),
            Step::Workdir(dir) => format!("WORKDIR {dir}"),
            Step::User(user) => format!("USER {user}"),
            Step::Entrypoint(args) => format!("ENTRYPOINT {}", serde_json::json!(args)),
            Step::Shell(args) => format!("SHELL {}", serde_json::json!(args)),
        }
    }
}

/// A command run with `/bin/sh -c` (or the current `Shell`), with mounts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunStep {
    /// The command line.
    pub command: String,
    /// Mounts visible only while the command runs; never part of a layer.
    pub mounts: Vec<Mount>,
}

/// A mount for one RUN step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mount {
    /// A persistent cache directory shared between builds (locked, mode 0777).
    Cache {
        /// Cache identity.
        id: String,
        /// Where it appears.
        target: String,
    },
    /// A build secret file.
    Secret {
        /// Secret id (see [`BuildPlan::secrets`]).
        id: String,
        /// Where it appears.
        target: String,
    },
    /// A path from a helper image.
    Image {
        /// Helper image alias.
        alias: String,
        /// Path in the helper image.
        source: String,
        /// Where it appears.
        target: String,
    },
    /// A file from the build context.
    Context {
        /// Path in the context.
        source: String,
        /// Where it appears (relative to the working directory, or absolute).
        target: String,
    },
}

/// Copy context paths into the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyStep {
    /// Context paths (files or folders).
    pub sources: Vec<String>,
    /// Destination in the image; ends with `/` for a folder.
    pub destination: String,
    /// Owner of the copied files.
    pub chown: Option<String>,
}

/// One file of the build context.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextEntry {
    /// Path inside the context, `/`-separated.
    pub path: String,
    /// Where its bytes come from.
    pub source: ContextSource,
}

/// Where a context file's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// A file on this machine.
    File(PathBuf),
    /// Bytes berth generated (e.g. requirements_uv.txt).
    Bytes(Vec<u8>),
}

/// A secret the build mounts, read from a file on this machine. Its content never enters a layer or a log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanSecret {
    /// Id the mount refers to.
    pub id: String,
    /// The file holding it.
    pub source: PathBuf,
}

impl BuildPlan {
    /// Whether any step uses a cache mount.
    pub fn uses_cache_mounts(&self) -> bool {
        self.mounts().any(|m| matches!(m, Mount::Cache { .. }))
    }

    /// Whether any step uses a secret mount.
    pub fn uses_secret_mounts(&self) -> bool {
        self.mounts().any(|m| matches!(m, Mount::Secret { .. }))
    }

    /// Whether any step mounts files (any `RUN --mount`), which needs BuildKit on Docker.
    pub fn uses_mounts(&self) -> bool {
        self.mounts().next().is_some()
    }

    /// The file behind secret `id`, checked to exist: a missing file fails before the build starts, naming
    /// the file, rather than as an obscure mount error halfway through. The one such check every engine uses.
    pub fn secret_file(&self, id: &str) -> Result<&Path> {
        let secret = self.secrets.iter().find(|s| s.id == id).ok_or_else(|| {
            Error::invalid(format!(
                "a step mounts secret `{id}`, but the plan names no file for it"
            ))
        })?;
        std::fs::metadata(&secret.source)
            .map_err(|e| Error::io(&secret.source, e).context(format!("secret `{id}`")))?;
        Ok(&secret.source)
    }

    /// Every secret a step mounts, once each in the order first mounted, with its file checked
    /// ([`BuildPlan::secret_file`]).
    pub fn secret_files(&self) -> Result<Vec<(String, PathBuf)>> {
        let mut used: Vec<(String, PathBuf)> = Vec::new();
        for mount in self.mounts() {
            let Mount::Secret { id, .. } = mount else {
                continue;
            };
            if used.iter().all(|(seen, _)| seen != id) {
                let path = self.secret_file(id)?.to_path_buf();
                used.push((id.clone(), path));
            }
        }
        Ok(used)
    }

    fn mounts(&self) -> impl Iterator<Item = &Mount> {
        self.steps
            .iter()
            .filter_map(|s| match s {
                Step::Run(run) => Some(run.mounts.iter()),
                _ => None,
            })
            .flatten()
    }
}

mod copy_dir;
mod from_spec;
pub use from_spec::{plan_for_spec, DEFAULT_PYTHON_VERSION};

/// Plans a spec: names its base spec (if any) and computes its id, then [`plan_for_spec`].
pub fn plan(namer: &Namer, spec: &ImageSpec) -> Result<BuildPlan> {
    let base = match &spec.base_image {
        None => DEFAULT_BASE_IMAGE.to_string(),
        Some(BaseImage::Reference(r)) => r.clone(),
        Some(BaseImage::Spec(base)) => namer.image_name(base)?.to_string(),
    };
    plan_for_spec(spec, &base, &spec_id(spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mounted: &[&str], secrets: Vec<PlanSecret>) -> BuildPlan {
        let run = |id: &&str| {
            Step::Run(RunStep {
                command: "true".into(),
                mounts: vec![Mount::Secret {
                    id: id.to_string(),
                    target: "/run/s".into(),
                }],
            })
        };
        BuildPlan {
            base_image: "debian".into(),
            platform: String::new(),
            helper_images: Vec::new(),
            steps: mounted.iter().map(run).collect(),
            context: Vec::new(),
            secrets,
        }
    }

    #[test]
    fn secret_files_are_checked_once_each_in_mount_order() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("token");
        std::fs::write(&file, "x").expect("write");
        let secret = |id: &str, source: &Path| PlanSecret {
            id: id.into(),
            source: source.to_path_buf(),
        };
        let ok = plan(
            &["b", "a", "b"],
            vec![secret("a", &file), secret("b", &file)],
        );
        let ids: Vec<String> = ok
            .secret_files()
            .expect("present")
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["b", "a"]);
        let undefined = plan(&["a"], Vec::new())
            .secret_files()
            .expect_err("undefined");
        assert_eq!(undefined.kind(), crate::ErrorKind::InvalidSpec);
        let gone = dir.path().join("gone");
        let missing = plan(&["a"], vec![secret("a", &gone)])
            .secret_files()
            .expect_err("missing");
        assert_eq!(missing.kind(), crate::ErrorKind::NotFound);
        assert!(missing.message().contains("secret `a`"), "{missing}");
    }
}
