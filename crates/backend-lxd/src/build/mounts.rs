//! A RUN step's mounts as LXD disk devices, added for the step and removed after it, on the local server (a remote
//! one's are in [`super::pushed`]).
//!
//! - **cache**: a folder of berth's state folder per cache id (`caches/<id>`, mode 0777), kept between builds.
//!   Two builds at once take turns: berth holds an exclusive `flock` on `caches/<id>.lock` while a step uses
//!   the cache (the lock belongs to berth's process, so a killed or cancelled build releases it).
//! - **secret**: the secret's file copied into the build's folder (mode 0400), mounted read-only, removed after
//!   the step; the mount point LXD made is removed too, so no layer holds either.
//! - **context**: the context file copied into the build's folder and mounted read-only.
//! - **image**: a path of a helper image's root folder (pulled into the store and unpacked once under
//!   `helpers/<manifest>`), mounted read-only.

use std::fs::File;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use berth_core::engine::Progress;
use berth_core::image_config::normalize;
use berth_core::plan::{ContextSource, Mount, RunStep};
use berth_core::{ErrorKind, Operation, Result};
use berth_layer::entries::IdShift;
use serde_json::{json, Map, Value};

use super::users::inside;
use super::Session;
use crate::errors::{error, io_error};

const OP: Operation = Operation::Build;

/// The devices of one step and what must be undone after it.
#[derive(Default)]
pub(crate) struct StepMounts {
    pub(crate) devices: Map<String, Value>,
    /// Cache locks, held until the step ends.
    locks: Vec<File>,
    /// Files berth wrote for the step (secrets, context files).
    files: Vec<PathBuf>,
    /// Mount points LXD makes that were not in the image (removed after the step).
    pub(crate) created: Vec<PathBuf>,
}

impl StepMounts {
    /// Releases the locks and removes the step's files and the mount points LXD made.
    pub(crate) fn release(self) {
        drop(self.locks);
        for file in &self.files {
            let _ = std::fs::remove_file(file);
        }
        for target in self.created.iter().rev() {
            // only what is still an empty mount point: a step may have put something there itself
            let _ = std::fs::remove_dir(target);
            if std::fs::symlink_metadata(target).is_ok_and(|m| m.is_file() && m.len() == 0) {
                let _ = std::fs::remove_file(target);
            }
        }
    }
}

/// A cache id as a folder name.
pub(crate) fn cache_name(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "._-".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What the step's mounts contribute to its cache key: context files by contents, helper paths by image.
pub(crate) async fn identity(
    session: &Session<'_>,
    run: &RunStep,
    progress: &dyn Progress,
) -> Result<String> {
    let mut out = String::new();
    for mount in &run.mounts {
        let line = match mount {
            Mount::Cache { id, target } => format!("cache {id} {target}"),
            Mount::Secret { id, target } => format!("secret {id} {target}"),
            Mount::Context { source, target } => {
                let entry = context_entry(session, source)?;
                let digest = berth_layer::copy::content_digest(&entry)
                    .map_err(|e| e.with_engine(crate::ENGINE))?;
                format!("context {source} {digest} {target}")
            }
            Mount::Image {
                alias,
                source,
                target,
            } => {
                let helper = session.helper(alias, progress).await?;
                format!("image {} {source} {target}", helper.0)
            }
        };
        out.push_str(&line);
        out.push('\n');
    }
    Ok(out)
}

pub(crate) fn context_entry(session: &Session<'_>, source: &str) -> Result<ContextSource> {
    session
        .plan
        .context
        .iter()
        .find(|e| e.path == source.trim_start_matches("./"))
        .map(|e| e.source.clone())
        .ok_or_else(|| {
            error(
                ErrorKind::BuildFailed,
                OP,
                format!("RUN --mount: `{source}` is not a file of the build context"),
            )
            .with_hint("check the spec's copy and source_root entries")
        })
}

/// Makes a cache folder's files the unprivileged container's: a folder whose owner is not the container's root
/// was filled by builds whose root was the host's (privileged containers, or another id map's), and the tool
/// that reads it (uv, apt) would be refused its own files. Host ids below the map's start are moved into it
/// (uid n becomes shift.uid + n), once: the folder's owner records that it is done.
fn owned_by_container(dir: &Path, shift: IdShift) -> Result<()> {
    use std::os::unix::fs::MetadataExt as _;
    let meta = std::fs::metadata(dir).map_err(|e| io_error(OP, dir.display(), e))?;
    if meta.uid() == shift.uid {
        return Ok(());
    }
    fn walk(path: &Path, shift: IdShift) -> std::io::Result<()> {
        let meta = std::fs::symlink_metadata(path)?;
        let moved = |id: u32, base: u32| {
            if id < base {
                base.saturating_add(id)
            } else {
                id
            }
        };
        std::os::unix::fs::lchown(
            path,
            Some(moved(meta.uid(), shift.uid)),
            Some(moved(meta.gid(), shift.gid)),
        )?;
        if meta.is_dir() {
            for entry in std::fs::read_dir(path)? {
                walk(&entry?.path(), shift)?;
            }
        }
        Ok(())
    }
    walk(dir, shift).map_err(|e| io_error(OP, dir.display(), e))
}

/// Prepares the devices for `run`'s mounts, relative to `workdir`.
pub(crate) async fn prepare(
    session: &Session<'_>,
    run: &RunStep,
    workdir: &str,
    rootfs: &Path,
    shift: Option<IdShift>,
    progress: &dyn Progress,
) -> Result<StepMounts> {
    // the container's root owns the files berth hands it (a secret is 0400)
    let to_root = |path: &Path| match shift {
        None => Ok(()),
        Some(s) => std::os::unix::fs::chown(path, Some(s.uid), Some(s.gid))
            .map_err(|e| io_error(OP, path.display(), e)),
    };
    let mut mounts = StepMounts::default();
    let mut caches: Vec<(String, String)> = Vec::new();
    for (i, mount) in run.mounts.iter().enumerate() {
        let (target, source, readonly) = match mount {
            Mount::Cache { id, target } => {
                let dir = session.state_dir.join("caches").join(cache_name(id));
                std::fs::create_dir_all(&dir).map_err(|e| io_error(OP, dir.display(), e))?;
                let _ = std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777));
                if let Some(shift) = shift {
                    owned_by_container(&dir, shift)?;
                }
                caches.push((cache_name(id), target.clone()));
                (target, dir, false)
            }
            Mount::Secret { id, target } => {
                let secret = session
                    .plan
                    .secrets
                    .iter()
                    .find(|s| &s.id == id)
                    .ok_or_else(|| {
                        error(
                            ErrorKind::InvalidSpec,
                            OP,
                            format!("a step mounts secret `{id}`, which the plan does not name"),
                        )
                    })?;
                let copy = session.work.join(format!("secret-{i}"));
                std::fs::copy(&secret.source, &copy)
                    .map_err(|e| io_error(OP, format!("secret `{id}`"), e))?;
                let _ = std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o400));
                mounts.files.push(copy.clone());
                to_root(&copy)?;
                (target, copy, true)
            }
            Mount::Context { source, target } => {
                let copy = session.work.join(format!("context-{i}"));
                match context_entry(session, source)? {
                    ContextSource::File(path) => std::fs::copy(&path, &copy).map(drop),
                    ContextSource::Bytes(bytes) => std::fs::write(&copy, bytes),
                }
                .map_err(|e| io_error(OP, format!("context file {source}"), e))?;
                mounts.files.push(copy.clone());
                to_root(&copy)?;
                (target, copy, true)
            }
            Mount::Image {
                alias,
                source,
                target,
            } => {
                let (_, root) = session.helper(alias, progress).await?;
                let path = inside(&root, &normalize(Path::new("/"), source)).ok_or_else(|| {
                    error(
                        ErrorKind::BuildFailed,
                        OP,
                        format!("RUN --mount from {alias}: {source} goes through a symlink"),
                    )
                })?;
                (target, path, true)
            }
        };
        let target = normalize(Path::new(workdir), target);
        if let Some(host) = inside(rootfs, &target) {
            if std::fs::symlink_metadata(&host).is_err() {
                mounts.created.push(host);
            }
        }
        let mut device = json!({"type": "disk", "source": source, "path": target});
        if readonly {
            device["readonly"] = json!("true");
        }
        mounts.devices.insert(format!("step-{i}"), device);
    }
    // one order for every build, so two builds needing the same caches cannot each hold one the other wants
    caches.sort();
    caches.dedup();
    for (name, _) in caches {
        let path = session
            .state_dir
            .join("caches")
            .join(format!("{name}.lock"));
        let file = File::create(&path).map_err(|e| io_error(OP, path.display(), e))?;
        let file = tokio::task::spawn_blocking(move || {
            rustix::fs::flock(&file, rustix::fs::FlockOperation::LockExclusive).map(|()| file)
        })
        .await
        .map_err(|e| error(ErrorKind::Io, OP, format!("waiting for cache {name}: {e}")))?
        .map_err(|e| io_error(OP, path.display(), e.into()))?;
        mounts.locks.push(file);
    }
    Ok(mounts)
}
