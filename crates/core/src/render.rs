//! Rendering a build plan as a Dockerfile for Docker (BuildKit) and Podman (buildah).
//!
//! Every value reaching a line was checked to be single-line when the spec was read; here values are quoted so
//! they stay one token: ENV values in double quotes, COPY and ENTRYPOINT in JSON form. There is no `# syntax=`
//! line: it would make BuildKit pull a frontend image from Docker Hub, and the built-in frontends of Docker 20.10+
//! and buildah already understand `RUN --mount`.

use std::fmt::Write;

use crate::plan::{BuildPlan, CopyStep, Mount, RunStep, Step};

const CONTINUE: &str = " \\\n    ";

/// How RUN steps mount their caches (`RUN --mount=type=cache`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum CacheMounts {
    /// `sharing=locked`: one build at a time holds a cache (flytekit's choice; BuildKit releases it when a build
    /// is cancelled).
    #[default]
    Locked,
    /// `sharing=shared`, each step taking a kernel lock (`flock`) on every cache it mounts before its command
    /// runs: one build at a time uses a cache, as with `locked`, but the lock belongs to the step's processes and
    /// dies with them. The Podman backend uses this: buildah 1.28 never releases a `locked` cache when a build is
    /// cancelled mid-step (every later build hangs at that step until the service restarts), and with plain
    /// `shared` two builds run apt on one cache at once and one fails (`Could not get lock`). The lock is skipped
    /// in images without `flock` (util-linux and busybox have it).
    ///
    /// `id_suffix` is appended to every cache id: buildah keeps one folder per id for root and every user alike,
    /// owned by whoever made it first, so ids must differ between users.
    SharedWithLock {
        /// Appended to each cache id (`apt` becomes `apt-<suffix>`).
        id_suffix: String,
    },
    /// An empty tmpfs at each cache target: nothing is kept between builds, and nothing the tools download lands
    /// in the layer. For engines that cannot keep caches for this user.
    Tmpfs,
}

/// Choices that differ between engines; the plan's content does not.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RenderOptions {
    /// How cache mounts are rendered.
    pub cache_mounts: CacheMounts,
}

/// The Dockerfile for a plan, with default options (what `berth render` prints and Docker builds).
pub fn dockerfile(plan: &BuildPlan) -> String {
    dockerfile_with(plan, &RenderOptions::default())
}

/// The Dockerfile for a plan, rendered with `options`.
pub fn dockerfile_with(plan: &BuildPlan, options: &RenderOptions) -> String {
    let mut out = String::new();
    for helper in &plan.helper_images {
        let _ = writeln!(out, "FROM {} AS {}", helper.reference, helper.alias);
    }
    if !plan.helper_images.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "FROM {}", plan.base_image);
    for step in &plan.steps {
        match step {
            Step::Run(run) => render_run(run, options, &mut out),
            Step::Copy(copy) => render_copy(copy, &mut out),
            Step::Env(vars) => {
                let pairs: Vec<String> = vars
                    .iter()
                    .map(|(k, v)| format!("{k}={}", env_value(v)))
                    .collect();
                let _ = writeln!(out, "ENV {}", pairs.join(CONTINUE));
            }
            Step::Label(labels) => {
                let pairs: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{}={}", env_value(k), env_value(v)))
                    .collect();
                let _ = writeln!(out, "LABEL {}", pairs.join(CONTINUE));
            }
            Step::Workdir(dir) => {
                let _ = writeln!(out, "WORKDIR {dir}");
            }
            Step::User(user) => {
                let _ = writeln!(out, "USER {user}");
            }
            Step::Entrypoint(args) => {
                let _ = writeln!(out, "ENTRYPOINT {}", json_array(args));
            }
            Step::Shell(args) => {
                let _ = writeln!(out, "SHELL {}", json_array(args));
            }
        }
    }
    out
}

fn render_run(run: &RunStep, options: &RenderOptions, out: &mut String) {
    out.push_str("RUN ");
    for mount in &run.mounts {
        out.push_str(&mount_flag(mount, options));
        out.push_str(CONTINUE);
    }
    if matches!(options.cache_mounts, CacheMounts::SharedWithLock { .. }) {
        out.push_str(&cache_locks(run));
    }
    out.push_str(&run.command);
    out.push('\n');
}

/// Shell that takes an exclusive `flock` on each cache the step mounts (file descriptors 9, 8, ...), held until
/// the step's last process exits. The file lives in the cache folder, never in the layer.
fn cache_locks(run: &RunStep) -> String {
    let mut out = String::new();
    let targets = run.mounts.iter().filter_map(|m| match m {
        Mount::Cache { target, .. } => Some(target),
        _ => None,
    });
    for (n, target) in targets.enumerate() {
        let fd = 9usize.saturating_sub(n).max(3);
        let _ = write!(
            out,
            "exec {fd}>{target}/.berth-lock; command -v flock >/dev/null && flock {fd};{CONTINUE}"
        );
    }
    out
}

/// The `--mount=...` flag for a mount.
fn mount_flag(mount: &Mount, options: &RenderOptions) -> String {
    match mount {
        Mount::Cache { id, target } => match &options.cache_mounts {
            CacheMounts::Locked => {
                format!("--mount=type=cache,sharing=locked,mode=0777,target={target},id={id}")
            }
            CacheMounts::SharedWithLock { id_suffix } => format!(
                "--mount=type=cache,sharing=shared,mode=0777,target={target},id={id}-{id_suffix}"
            ),
            CacheMounts::Tmpfs => format!("--mount=type=tmpfs,target={target}"),
        },
        Mount::Secret { id, target } => format!("--mount=type=secret,id={id},target={target}"),
        Mount::Image {
            alias,
            source,
            target,
        } => {
            // `type=bind` spelled out: buildah 1.28 gives a mount without `type=` the type of the mount before it
            // on the line, so after a tmpfs mount it refused `from=` ("invalid mount option").
            format!("--mount=type=bind,from={alias},source={source},target={target}")
        }
        Mount::Context { source, target } => {
            format!("--mount=type=bind,target={target},src={source}")
        }
    }
}

fn render_copy(copy: &CopyStep, out: &mut String) {
    out.push_str("COPY ");
    if let Some(owner) = &copy.chown {
        let _ = write!(out, "--chown={owner} ");
    }
    let mut args = copy.sources.clone();
    args.push(copy.destination.clone());
    out.push_str(&json_array(&args));
    out.push('\n');
}

fn json_array(items: &[String]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s).expect("strings serialize"))
        .collect();
    format!("[{}]", quoted.join(", "))
}

/// A double-quoted ENV value: `\` and `"` escaped; `$NAME` still expands, as in flytekit's Dockerfile.
fn env_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::HelperImage;

    #[test]
    fn values_stay_one_token() {
        let plan = BuildPlan {
            base_image: "debian:bookworm-slim".into(),
            platform: "linux/amd64".into(),
            helper_images: vec![HelperImage {
                alias: "uv".into(),
                reference: "uv:1".into(),
            }],
            steps: vec![
                Step::Env(vec![("A".into(), "say \"hi\" \\ $HOME".into())]),
                Step::Copy(CopyStep {
                    sources: vec!["a b.txt".into()],
                    destination: "/root/".into(),
                    chown: None,
                }),
            ],
            context: vec![],
            secrets: vec![],
        };
        let text = dockerfile(&plan);
        assert!(
            text.contains("ENV A=\"say \\\"hi\\\" \\\\ $HOME\"\n"),
            "{text}"
        );
        assert!(text.contains("COPY [\"a b.txt\", \"/root/\"]\n"), "{text}");
        assert!(
            text.starts_with("FROM uv:1 AS uv\n\nFROM debian:bookworm-slim\n"),
            "{text}"
        );
    }
}
