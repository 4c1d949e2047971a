//! A RUN step's mounts on a remote LXD server, whose disk devices cannot name this machine's files.
//!
//! - **cache**: an LXD custom storage volume per cache id (`berth-cache-<id>`) on the build container's pool,
//!   made on first use and kept between builds, attached as a disk device for the step. Two builds at once
//!   take turns through a lock held on the server: the volume's `user.berth.lock` config key names the build
//!   container that holds it, set and cleared only if the volume's `ETag` is unchanged since berth read it (so
//!   two builds cannot both take it). A lock whose container is gone (a killed build, removed by the next one;
//!   a cancelled one, removed in the background) is free.
//! - **secret**, **context** and **image** mounts: the file (or a helper image's folder) is pushed through the
//!   file API to its target for the step, with the folders above it that were missing, and removed after the
//!   step, before the root folder is exported for the layer; a secret still there after that fails the step
//!   ([`super::steps`] checks the export). A target the image already has is refused (pushing over it would
//!   lose the image's file). Unlike a local bind mount, a pushed file is not read-only to the step's root.

use std::path::Path;

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::image_config::normalize;
use berth_core::plan::{ContextSource, Mount, RunStep};
use berth_core::{ErrorKind, Operation, Result};
use http::Method;
use serde_json::{json, Map, Value};

use super::mounts::{cache_name, context_entry};
use super::users::inside;
use super::Session;
use crate::client::Body;
use crate::errors::{error, io_error};
use crate::instance::Instance;

const OP: Operation = Operation::Build;

/// The config key of a cache volume naming the build container that holds it.
const LOCK_KEY: &str = "user.berth.lock";

/// The devices of one step on a remote server and what must be undone after it.
#[derive(Default)]
pub(crate) struct RemoteMounts {
    pub(crate) devices: Map<String, Value>,
    /// Files and folders berth pushed for the step, in the order pushed.
    pushed: Vec<String>,
    /// Folders that were missing above a target (berth's or LXD's mount points): removed when empty.
    made: Vec<String>,
    /// The API paths of the cache volumes the step holds.
    locks: Vec<String>,
    /// The secrets' targets, which no export may hold after the step.
    pub(crate) secrets: Vec<String>,
}

impl RemoteMounts {
    /// Removes what was pushed (a file that cannot be removed is an error: it may be a secret), then the empty
    /// folders made for it, and releases the cache locks.
    pub(crate) async fn release(self, instance: &Instance) -> Result<()> {
        let mut first = Ok(());
        for path in self.pushed.iter().rev() {
            if let Err(e) = instance.delete_file(path).await {
                first = first.and(Err(e));
            }
        }
        for path in self.made.iter().rev() {
            // a folder the step put something in stays, as a local mount point does
            let _ = instance.delete_file(path).await;
        }
        for lock in &self.locks {
            if let Err(e) = unlock(instance, lock).await {
                first = first.and(Err(e));
            }
        }
        first
    }

    /// Records the folders above `target` that are missing and makes them (`make`: berth pushes them; else
    /// LXD makes them as a mount point, with `target` itself).
    async fn parents(&mut self, instance: &Instance, target: &str, make: bool) -> Result<()> {
        let mut missing = Vec::new();
        let mut up = Path::new(target).parent().map(Path::to_path_buf);
        while let Some(dir) = up {
            if dir == Path::new("/") || dir.as_os_str().is_empty() {
                break;
            }
            let name = dir.to_string_lossy().into_owned();
            if instance.path_type(&name).await?.is_some() {
                break;
            }
            missing.push(name);
            up = dir.parent().map(Path::to_path_buf);
        }
        for dir in missing.into_iter().rev() {
            if make {
                instance.push_file(&dir, None, (0, 0), 0o755).await?;
            }
            self.made.push(dir);
        }
        Ok(())
    }

    /// Puts `body` at `target` for the step.
    async fn place(
        &mut self,
        instance: &Instance,
        target: &str,
        body: Body,
        mode: u32,
    ) -> Result<()> {
        self.vacant(instance, target).await?;
        self.parents(instance, target, true).await?;
        instance.push_file(target, Some(body), (0, 0), mode).await?;
        self.pushed.push(target.to_string());
        Ok(())
    }

    async fn vacant(&self, instance: &Instance, target: &str) -> Result<()> {
        if instance.path_type(target).await?.is_none() {
            return Ok(());
        }
        Err(error(
            ErrorKind::Unsupported,
            OP,
            format!(
                "RUN --mount at {target}: the image has something there already; on a remote LXD server berth \
                 puts a mount's files in place for the step and cannot put them over the image's"
            ),
        )
        .with_hint("mount at a path the image does not have, or build on this machine's LXD"))
    }

    /// Pushes the helper image's `host` path (a file, a symlink or a folder tree) to `target`.
    async fn place_tree(&mut self, instance: &Instance, host: &Path, target: &str) -> Result<()> {
        use std::os::unix::fs::MetadataExt as _;
        self.vacant(instance, target).await?;
        self.parents(instance, target, true).await?;
        let mut pending = vec![(host.to_path_buf(), target.to_string())];
        while let Some((from, to)) = pending.pop() {
            let meta =
                std::fs::symlink_metadata(&from).map_err(|e| io_error(OP, from.display(), e))?;
            let owner = (meta.uid(), meta.gid());
            if meta.is_dir() {
                instance
                    .push_file(&to, None, owner, meta.mode() & 0o7777)
                    .await?;
                let mut children: Vec<_> = std::fs::read_dir(&from)
                    .map_err(|e| io_error(OP, from.display(), e))?
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
                children.sort();
                for child in children.into_iter().rev() {
                    pending.push((from.join(&child), format!("{to}/{child}")));
                }
            } else if meta.file_type().is_symlink() {
                let link =
                    std::fs::read_link(&from).map_err(|e| io_error(OP, from.display(), e))?;
                instance.push_symlink(&to, &link.to_string_lossy()).await?;
            } else if meta.is_file() {
                instance
                    .push_file(
                        &to,
                        Some(Body::File(from.clone())),
                        owner,
                        meta.mode() & 0o7777,
                    )
                    .await?;
            } else {
                continue;
            }
            self.pushed.push(to);
        }
        Ok(())
    }
}

/// Prepares the devices and files for `run`'s mounts, relative to `workdir`, on a remote server.
pub(crate) async fn prepare(
    session: &Session<'_>,
    instance: &Instance,
    run: &RunStep,
    workdir: &str,
    progress: &dyn Progress,
) -> Result<RemoteMounts> {
    let mut mounts = RemoteMounts::default();
    let mut caches = Vec::new();
    for (i, mount) in run.mounts.iter().enumerate() {
        let target = |t: &str| normalize(Path::new(workdir), t);
        match mount {
            Mount::Cache { id, target: t } => {
                let target = target(t);
                let (pool, volume) = cache_volume(session, id).await?;
                if instance.path_type(&target).await?.is_none() {
                    // LXD makes the mount point and the folders above it
                    mounts.parents(instance, &target, false).await?;
                    mounts.made.push(target.clone());
                }
                let device =
                    json!({"type": "disk", "pool": pool, "source": volume, "path": target});
                mounts.devices.insert(format!("step-{i}"), device);
                caches.push(format!("/1.0/storage-pools/{pool}/volumes/custom/{volume}"));
            }
            Mount::Secret { id, target: t } => {
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
                let value = std::fs::read(&secret.source)
                    .map_err(|e| io_error(OP, format!("secret `{id}`"), e))?;
                let target = target(t);
                mounts.secrets.push(target.clone());
                mounts
                    .place(instance, &target, Body::Bytes(value.into()), 0o400)
                    .await?;
            }
            Mount::Context { source, target: t } => {
                let body = match context_entry(session, source)? {
                    ContextSource::File(path) => Body::File(path),
                    ContextSource::Bytes(bytes) => Body::Bytes(bytes.into()),
                };
                mounts.place(instance, &target(t), body, 0o444).await?;
            }
            Mount::Image {
                alias,
                source,
                target: t,
            } => {
                let (_, root) = session.helper(alias, progress).await?;
                let host = inside(&root, &normalize(Path::new("/"), source)).ok_or_else(|| {
                    error(
                        ErrorKind::BuildFailed,
                        OP,
                        format!("RUN --mount from {alias}: {source} goes through a symlink"),
                    )
                })?;
                mounts.place_tree(instance, &host, &target(t)).await?;
            }
        }
    }
    // one order for every build, so two builds needing the same caches cannot each hold one the other wants
    caches.sort();
    caches.dedup();
    for volume in caches {
        lock(instance, &volume, progress).await?;
        mounts.locks.push(volume);
    }
    Ok(mounts)
}

/// The pool and name of cache `id`'s volume, made if missing: on the pool builds use (engine.lxd.pool, else the
/// default profile's root disk's).
async fn cache_volume(session: &Session<'_>, id: &str) -> Result<(String, String)> {
    let lxd = &session.engine.lxd;
    let pool = match session.engine.options.pool() {
        Some(pool) => pool,
        None => {
            let profile = lxd
                .call(OP, Method::GET, "/1.0/profiles/default", None)
                .await?;
            crate::doctor::root_pool(&profile).ok_or_else(|| {
                error(
                    ErrorKind::EngineUnavailable,
                    OP,
                    "the LXD server's default profile has no root disk, so berth knows no pool for cache volumes",
                )
                .with_hint("name a storage pool with engine.lxd.pool (BERTH_LXD_POOL)")
            })?
        }
    };
    let volume = format!("berth-cache-{}", cache_name(id));
    let path = format!("/1.0/storage-pools/{pool}/volumes/custom/{volume}");
    match lxd.call(OP, Method::GET, &path, None).await {
        Ok(_) => return Ok((pool, volume)),
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    let body = json!({"name": volume, "type": "custom", "content_type": "filesystem", "config": {},
        "description": format!("berth cache {id}")});
    let made = lxd
        .call(
            OP,
            Method::POST,
            &format!("/1.0/storage-pools/{pool}/volumes/custom"),
            Some(&body),
        )
        .await;
    // another build may have made it first
    if let Err(e) = made {
        lxd.call(OP, Method::GET, &path, None)
            .await
            .map_err(|_| e)?;
    }
    Ok((pool, volume))
}

/// How many times in a row a lock may be changed under berth before it gives up (a server whose `ETag`s never
/// match would otherwise keep it waiting).
const MAX_CONFLICTS: u32 = 100;

/// Takes the lock of the cache volume at `path` for `instance`, waiting while another live build holds it.
async fn lock(instance: &Instance, path: &str, progress: &dyn Progress) -> Result<()> {
    let lxd = instance.lxd();
    let (mut conflicts, mut said) = (0, false);
    loop {
        let (volume, etag) = lxd.get_tagged(OP, path).await?;
        let holder = volume["config"][LOCK_KEY]
            .as_str()
            .unwrap_or("")
            .to_string();
        let free =
            holder.is_empty() || holder == instance.name || !exists(instance, &holder).await?;
        if free {
            let mut config = volume["config"].as_object().cloned().unwrap_or_default();
            config.insert(LOCK_KEY.into(), json!(instance.name));
            let body = json!({"config": config, "description": volume["description"]});
            if lxd.put_if_unchanged(OP, path, &body, &etag).await? {
                return Ok(());
            }
            conflicts += 1;
            if conflicts >= MAX_CONFLICTS {
                return Err(error(
                    ErrorKind::Protocol,
                    OP,
                    format!("LXD {path}: the cache volume changed under every one of {MAX_CONFLICTS} attempts to lock it"),
                ));
            }
            continue;
        }
        if !said {
            progress.event(ProgressEvent::Line(format!(
                "waiting for the cache volume {}, which build {holder} uses",
                path.rsplit('/').next().unwrap_or(path)
            )));
            said = true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    }
}

/// Releases `instance`'s lock of the cache volume at `path` (nothing if another holds it).
async fn unlock(instance: &Instance, path: &str) -> Result<()> {
    let lxd = instance.lxd();
    for _ in 0..MAX_CONFLICTS {
        let (volume, etag) = lxd.get_tagged(OP, path).await?;
        if volume["config"][LOCK_KEY].as_str() != Some(instance.name.as_str()) {
            return Ok(());
        }
        let mut config = volume["config"].as_object().cloned().unwrap_or_default();
        config.remove(LOCK_KEY);
        let body = json!({"config": config, "description": volume["description"]});
        if lxd.put_if_unchanged(OP, path, &body, &etag).await? {
            return Ok(());
        }
    }
    Err(error(
        ErrorKind::Protocol,
        OP,
        format!("LXD {path}: could not release the cache volume's lock (it kept changing)"),
    ))
}

/// Whether build container `name` is on the server.
async fn exists(instance: &Instance, name: &str) -> Result<bool> {
    match instance
        .lxd()
        .call(OP, Method::GET, &format!("/1.0/instances/{name}"), None)
        .await
    {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
