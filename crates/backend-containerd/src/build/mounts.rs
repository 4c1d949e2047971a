//! A RUN step's mounts as bind mounts from the host: cache folders that persist in berth's state folder (one
//! step at a time per cache, like `sharing=locked`), secrets read-only from where they are, context files from a
//! copy berth made when it hashed them for the step cache (so the step sees exactly the bytes its cache key
//! describes, even if the originals change during the build), and a helper image's file from a read-only view of
//! its unpacked snapshot. None of them is part of the step's
//! layer: they are mounts, and the mount points runc had to create are removed again before the layer is taken.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::plan::{ContextSource, Mount, RunStep};
use berth_core::{ErrorKind, Result};
use nix::fcntl::{Flock, FlockArg};

use super::spec::BindMount;
use super::Builder;
use crate::errors::{error, io_error, Op};
use crate::labels::{sha256, unique_id};
use crate::rootfs::{normalize, RootfsView};

/// The mounts of one step, and what must live until it ends.
pub(crate) struct StepMounts {
    pub(crate) binds: Vec<BindMount>,
    /// Views of helper images to remove after the step.
    pub(crate) views: Vec<String>,
    _locks: Vec<Flock<File>>,
}

fn cache_dir(builder: &Builder<'_>, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    let hash = sha256(id.as_bytes());
    builder
        .state_dir
        .join("cache")
        .join(format!("{safe}-{}", &hash[7..19]))
}

/// What a step's mounts contribute to its cache key: mount kinds and targets, the content of context files and
/// the helper images' digests (never a secret's value).
pub(crate) async fn identity(
    builder: &Builder<'_>,
    run: &RunStep,
    progress: &dyn Progress,
) -> Result<String> {
    let mut parts = Vec::new();
    for mount in &run.mounts {
        parts.push(match mount {
            Mount::Cache { id, target } => format!("cache {id} {target}"),
            Mount::Secret { id, target } => format!("secret {id} {target}"),
            Mount::Image {
                alias,
                source,
                target,
            } => {
                let helper = builder.helper(alias, progress).await?;
                format!("image {} {source} {target}", helper.image.manifest.digest)
            }
            Mount::Context { source, target } => {
                let (digests, _) = pin(builder, source)?;
                format!("context {source} {target} {}", digests.join(","))
            }
        });
    }
    Ok(parts.join("\n"))
}

fn context_entries(builder: &Builder<'_>, source: &str) -> Result<Vec<(String, ContextSource)>> {
    let source = source.trim_end_matches('/');
    let entries: Vec<(String, ContextSource)> = builder
        .plan
        .context
        .iter()
        .filter_map(|e| {
            if e.path == source {
                Some((String::new(), e.source.clone()))
            } else {
                e.path
                    .strip_prefix(source)
                    .and_then(|r| r.strip_prefix('/'))
                    .map(|r| (r.to_string(), e.source.clone()))
            }
        })
        .collect();
    if entries.is_empty() {
        return Err(error(
            ErrorKind::BuildFailed,
            Op::Build,
            format!("RUN --mount: `{source}` is not in the build context"),
        ));
    }
    Ok(entries)
}

/// Sets up the mounts of `run` (targets relative to `workdir`).
pub(crate) async fn prepare(
    builder: &Builder<'_>,
    run: &RunStep,
    workdir: &str,
    progress: &dyn Progress,
) -> Result<StepMounts> {
    let mut mounts = StepMounts {
        binds: Vec::new(),
        views: Vec::new(),
        _locks: Vec::new(),
    };
    for mount in &run.mounts {
        let bind = |source: &Path, target: &str, read_only| BindMount {
            source: source.display().to_string(),
            target: normalize(Path::new(workdir), target),
            read_only,
        };
        match mount {
            Mount::Cache { id, target } => {
                let dir = cache_dir(builder, id);
                std::fs::create_dir_all(&dir).map_err(|e| io_error(Op::Build, dir.display(), e))?;
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                    .map_err(|e| io_error(Op::Build, dir.display(), e))?;
                mounts._locks.push(lock(&dir, id, progress).await?);
                mounts.binds.push(bind(&dir, target, false));
            }
            Mount::Secret { id, target } => {
                let source = builder.plan.secret_file(id).map_err(|e| {
                    e.with_engine(crate::ENGINE)
                        .with_operation(berth_core::Operation::Build)
                })?;
                mounts.binds.push(bind(source, target, true));
            }
            Mount::Image {
                alias,
                source,
                target,
            } => {
                let helper = builder.helper(alias, progress).await?;
                let key = unique_id("helper");
                builder.guard.snapshot(&key);
                mounts.views.push(key.clone());
                let parent = helper.top.clone().unwrap_or_default();
                let view = builder.daemon.view(&key, &parent, Op::Build).await?;
                let host = RootfsView::from_mounts(&view)
                    .and_then(|v| v.resolve_file(source))
                    .ok_or_else(|| {
                        error(
                            ErrorKind::BuildFailed,
                            Op::Build,
                            format!("RUN --mount: helper image `{alias}` has no file {source}"),
                        )
                    })?;
                mounts.binds.push(bind(&host, target, true));
            }
            Mount::Context { source, target } => {
                let (_, host) = pin(builder, source)?;
                mounts.binds.push(bind(&host, target, true));
            }
        }
    }
    Ok(mounts)
}

/// The context entries under `source` copied into the build's folder of pinned context, hashed as they were
/// written: their `name=sha256` list for the cache key, and the host path to bind-mount. A source is copied once
/// per build, so every step that mounts it sees the same bytes.
fn pin(builder: &Builder<'_>, source: &str) -> Result<(Vec<String>, PathBuf)> {
    let mut pinned = builder.pinned.lock().unwrap_or_else(|p| p.into_inner());
    if let Some(found) = pinned.get(source) {
        return Ok(found.clone());
    }
    let entries = context_entries(builder, source)?;
    let dir = super::tmp_dir(builder, &builder.pin_key);
    if pinned.is_empty() {
        builder.guard.dir(dir.clone());
    }
    let dest = dir.join(&sha256(source.as_bytes())[7..31]);
    let mut digests = Vec::new();
    for (name, entry) in &entries {
        let path = if name.is_empty() {
            dest.clone()
        } else {
            dest.join(name)
        };
        let digest =
            write_hashed(&path, entry).map_err(|e| io_error(Op::Build, path.display(), e))?;
        digests.push(format!("{name}={digest}"));
    }
    let found = (digests, dest);
    pinned.insert(source.to_string(), found.clone());
    Ok(found)
}

/// Writes `source` to `path` (keeping a file's mode) and returns the sha256 (hex) of the bytes written.
fn write_hashed(path: &Path, source: &ContextSource) -> std::io::Result<String> {
    use std::io::Write as _;
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut out = berth_layer::HashingWriter::new(File::create(path)?);
    match source {
        ContextSource::Bytes(bytes) => out.write_all(bytes)?,
        ContextSource::File(from) => {
            let mut file = File::open(from)?;
            std::io::copy(&mut file, &mut out)?;
            std::fs::set_permissions(path, file.metadata()?.permissions())?;
        }
    }
    let (_, digest) = out.finish();
    Ok(digest.trim_start_matches("sha256:").to_string())
}

/// Takes the cache's lock, waiting while another build's step holds it.
async fn lock(dir: &Path, id: &str, progress: &dyn Progress) -> Result<Flock<File>> {
    let path = dir.with_extension("lock");
    let mut told = false;
    loop {
        let file = File::create(&path).map_err(|e| io_error(Op::Build, path.display(), e))?;
        match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
            Ok(lock) => return Ok(lock),
            Err((_, nix::errno::Errno::EWOULDBLOCK)) => {
                if !told {
                    progress.event(ProgressEvent::Line(format!(
                        "waiting for cache `{id}`, which another build is using"
                    )));
                    told = true;
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err((_, errno)) => {
                return Err(io_error(
                    Op::Build,
                    path.display(),
                    std::io::Error::from(errno),
                ))
            }
        }
    }
}
