//! Executing a build plan on containerd, step by step.
//!
//! The base image (and any helper image a step mounts from) is taken from the namespace or pulled. Config steps
//! edit the image config; RUN and COPY steps each add a layer on top of the previous step's snapshot ([`run`],
//! [`copy`]); every step gets a history entry. A layer step is looked up in the step cache first ([`cache`]).
//! At the end berth writes the config and an OCI manifest into the content store and points each tag at it.
//! Everything made along the way is held by the build's lease and removed by its [`Guard`] if the build fails or
//! is dropped.

mod blob;
mod cache;
mod cache_bound;
mod image;
mod layer_memo;
mod mounts;
mod overlay;
mod run;
mod seccomp;
mod spec;
mod upper;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use berth_core::engine::{BuildOptions, BuiltImage, Network, Progress, ProgressEvent};
use berth_core::image_config::ImageConfig;
use berth_core::plan::{BuildPlan, CopyStep, Step};
use berth_core::{Error, ErrorKind, Result};
use berth_layer::copy;
use berth_registry::RegistryClient;

use self::cache::{Layer, StepCache};
use crate::cleanup::Guard;
use crate::convert::{Daemon, Descriptor};
use crate::errors::{error, io_error, Op};
use crate::images::{host_platform, image_name};
use crate::labels::{chain_id, rfc3339, unique_id};
use crate::pull::{local_or_pull, Pulled};
use crate::rootfs::{resolve_user, RootfsView, SnapshotUnpack};
use crate::{ContainerdEngine, ENGINE};

pub(crate) use run::release_fifo;

/// What the steps of one build share.
pub(crate) struct Builder<'a> {
    engine: &'a ContainerdEngine,
    /// The connection, with every request on the build's lease.
    pub(crate) daemon: Daemon,
    pub(crate) guard: &'a Guard,
    pub(crate) plan: &'a BuildPlan,
    pub(crate) state_dir: PathBuf,
    /// This build's own folder (see [`crate::folders`]): removed with everything in it when the build ends.
    pub(crate) work_dir: PathBuf,
    pub(crate) namespace: String,
    pub(crate) network: Network,
    registry: RegistryClient,
    helpers: tokio::sync::Mutex<HashMap<String, Pulled>>,
    /// Context sources RUN steps mount, copied when hashed: `name=digest` list and host path, by source.
    pinned: std::sync::Mutex<HashMap<String, (Vec<String>, PathBuf)>>,
    /// The name of the build's folder of pinned context (under the layer folders).
    pin_key: String,
}

impl Builder<'_> {
    /// The helper image `alias`, from the namespace or pulled.
    pub(crate) async fn helper(&self, alias: &str, progress: &dyn Progress) -> Result<Pulled> {
        let mut helpers = self.helpers.lock().await;
        if let Some(pulled) = helpers.get(alias) {
            return Ok(pulled.clone());
        }
        let helper = self
            .plan
            .helper_images
            .iter()
            .find(|h| h.alias == alias)
            .ok_or_else(|| {
                error(
                    ErrorKind::InvalidSpec,
                    Op::Build,
                    format!("a step mounts from image `{alias}`, which the plan does not name"),
                )
            })?;
        let pulled = local_or_pull(
            self.engine,
            &self.registry,
            &helper.reference,
            Op::Build,
            progress,
        )
        .await
        .map_err(|e| e.context(format!("helper image {}", helper.reference)))?;
        helpers.insert(alias.to_string(), pulled.clone());
        Ok(pulled)
    }
}

/// Builds `plan` and tags the result.
pub(crate) async fn build(
    engine: &ContainerdEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let (os, arch) = host_platform();
    if !plan.platform.is_empty() && plan.platform != format!("{os}/{arch}") {
        return Err(Error::unsupported(
            ENGINE,
            "build",
            format!(
                "cannot build for {} on this {os}/{arch} machine",
                plan.platform
            ),
        )
        .with_hint(format!(
            "build on a {} machine, or set `platform: {os}/{arch}`",
            plan.platform
        )));
    }
    let names = options
        .tags
        .iter()
        .map(|t| image_name(t, Op::Build))
        .collect::<Result<Vec<_>>>()?;
    // base and helper pulls follow the same plain-HTTP rule as pushes (loopback, --insecure-registry)
    let registry = engine.registry_client(
        options.credentials.iter().cloned(),
        &options.insecure_registries,
    )?;
    let (guard, daemon) = Guard::lease(engine, "build", Op::Build).await?;
    let work_dir = crate::folders::new_build_folder(&engine.options.state_dir);
    guard.dir(work_dir.clone());
    let builder = Builder {
        engine,
        daemon,
        guard: &guard,
        plan,
        state_dir: engine.options.state_dir.clone(),
        work_dir,
        namespace: engine.options.namespace.clone(),
        network: options.network,
        registry,
        helpers: tokio::sync::Mutex::default(),
        pinned: std::sync::Mutex::default(),
        pin_key: unique_id("context"),
    };
    let result = execute(&builder, options.no_cache, &names, progress).await;
    drop(builder);
    let finished = guard.finish().await;
    let built = result?;
    finished?;
    Ok(built)
}

async fn execute(
    builder: &Builder<'_>,
    no_cache: bool,
    names: &[String],
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let plan = builder.plan;
    let base = local_or_pull(
        builder.engine,
        &builder.registry,
        &plan.base_image,
        Op::Build,
        progress,
    )
    .await
    .map_err(|e| e.context(format!("base image {}", plan.base_image)))?;
    let mut config = ImageConfig::from_base(&base.image.config_json);
    let mut layers: Vec<(Descriptor, String)> = base
        .image
        .layers()
        .into_iter()
        .map(|mut d| {
            d.media_type = image::oci_layer_type(&d.media_type);
            d
        })
        .zip(base.image.diff_ids())
        .collect();
    let mut parent = base.top.clone();
    let created = rfc3339(SystemTime::now());
    let cache = StepCache::new(builder.state_dir.join("steps"));
    cache_bound::prune(builder, &cache, progress).await;
    let total = plan.steps.len();
    for (i, step) in plan.steps.iter().enumerate() {
        let description = step.describe();
        progress.event(ProgressEvent::Step {
            index: i + 1,
            total,
            description: description.clone(),
        });
        let mut copied = Vec::new();
        let definition = match step {
            Step::Run(run) => format!(
                "RUN\n{}\n{}\n{}",
                config.run_identity(),
                run.command,
                mounts::identity(builder, run, progress).await?
            ),
            Step::Copy(copy) => {
                // Hashing the sources (the step cache's key, so a cache hit needs it too) reads every file: on a
                // blocking thread, so the other images of a project build go on meanwhile.
                let (context, step, workdir) =
                    (builder.plan.context.clone(), copy.clone(), config.workdir());
                let memo = builder.state_dir.join(copy::DIGESTS_FOLDER);
                copied = tokio::task::spawn_blocking(move || {
                    copy::collect_remembered(&context, &step, &workdir, Some(&memo))
                })
                .await
                .map_err(|e| {
                    error(
                        ErrorKind::Io,
                        Op::Build,
                        format!("hashing COPY sources: {e}"),
                    )
                })??;
                copy_identity(copy, &copied)
            }
            other => {
                config.apply(other);
                config.history(&created, &description, true);
                continue;
            }
        };
        let key = StepCache::key(parent.as_deref(), &definition);
        let cached = if no_cache {
            None
        } else {
            cache
                .get(&builder.daemon, builder.guard.lease_id(), &key)
                .await?
        };
        let layer = match cached {
            Some(layer) => {
                progress.event(ProgressEvent::Line("using the cached layer".into()));
                layer
            }
            None => {
                let layer = match step {
                    Step::Run(run) => {
                        run::run_step(
                            builder,
                            run,
                            &config,
                            parent.as_deref(),
                            &description,
                            progress,
                        )
                        .await?
                    }
                    Step::Copy(copy) => {
                        copy_step(builder, copy, copied, parent.as_deref(), progress).await?
                    }
                    _ => unreachable!("config steps continue above"),
                };
                cache
                    .put(&builder.daemon, &key, parent.as_deref(), &layer)
                    .await?;
                layer
            }
        };
        parent = Some(layer.chain.clone());
        layers.push((layer.blob, layer.diff_id));
        config.history(&created, &description, false);
    }
    image::finish(
        builder,
        &base,
        &config,
        &layers,
        parent.as_deref(),
        &created,
        names,
    )
    .await
}

/// What a COPY step's layer depends on: the owner and each file's destination, mode and contents.
fn copy_identity(step: &CopyStep, files: &[copy::CopiedFile]) -> String {
    let mut definition = format!("COPY\n{}", step.chown.as_deref().unwrap_or(""));
    for file in files {
        definition.push_str(&format!(
            "\n{} {:o} {}",
            file.target, file.mode, file.digest
        ));
    }
    definition
}

/// A COPY step: berth writes the layer and, in the same pass, its files into the step's snapshot (else the diff
/// service applies the layer there); the snapshot is committed by chain id.
async fn copy_step(
    builder: &Builder<'_>,
    step: &CopyStep,
    files: Vec<copy::CopiedFile>,
    parent: Option<&str>,
    progress: &dyn Progress,
) -> Result<Layer> {
    let daemon = &builder.daemon;
    let guard = builder.guard;
    let key = unique_id("copy");
    guard.snapshot(&key);
    let mounts = daemon
        .prepare(&key, parent.unwrap_or(""), Op::Build)
        .await?;
    let view = RootfsView::from_mounts(&mounts);
    let owner = match (&step.chown, &view) {
        (None, _) => (0, 0),
        (Some(spec), Some(view)) => {
            resolve_user(view, spec)
                .map(|u| (u.uid, u.gid))
                .map_err(|why| {
                    error(
                        ErrorKind::BuildFailed,
                        Op::Build,
                        format!("COPY --chown={spec}: {why}"),
                    )
                })?
        }
        (Some(spec), None) => {
            let (u, g) = spec.split_once(':').unwrap_or((spec, spec));
            match (u.parse(), g.parse()) {
                (Ok(u), Ok(g)) => (u, g),
                _ => return Err(error(ErrorKind::Unsupported, Op::Build, format!("COPY --chown={spec}: names need the overlayfs or native snapshotter; use numeric ids"))),
            }
        }
    };
    let all_folders = copy::folders(&files);
    let folders: Vec<String> = all_folders
        .iter()
        .filter(|d| view.as_ref().is_none_or(|v| !v.exists(d)))
        .cloned()
        .collect();
    // berth writes the files into the snapshot itself where that gives what unpacking the layer would
    let unpack = match (&view, overlay::incomplete_upper(&mounts)) {
        (Some(view), None) => SnapshotUnpack::prepare(view, &all_folders).map_err(|e| {
            io_error(
                Op::Build,
                "copying the image's folders into the COPY's snapshot",
                e,
            )
        })?,
        (Some(_), Some(feature)) => Err(format!("the snapshot's overlay mount uses {feature}")),
        (None, _) => Err(format!(
            "snapshotter `{}` gives no host folder",
            daemon.snapshotter
        )),
    };
    let mut unpack = match unpack {
        Ok(unpack) => Some(unpack),
        Err(why) => {
            progress.event(ProgressEvent::Line(format!(
                "{why}: containerd's diff service unpacks the COPY layer"
            )));
            None
        }
    };
    let direct = unpack.is_some();
    let memo = layer_memo::folder(&builder.state_dir);
    let memo_key = layer_memo::key(&files, &folders, owner);
    let known = layer_memo::held(builder, &memo, &memo_key).await;
    let (blob, diff_id) = match known.clone() {
        Some(known) => layer_memo::reuse(builder, known, files, folders, owner, unpack).await?,
        None => {
            blob::write_layer_blob(builder, "the COPY layer", move |out| {
                let into = unpack.as_mut().map(|u| u as &mut dyn copy::Unpack);
                copy::stream_layer_into(&files, &folders, owner, out, into)
            })
            .await?
        }
    };
    let written = layer_memo::KnownLayer {
        digest: blob.digest.clone(),
        size: blob.size,
        diff_id: diff_id.clone(),
    };
    if known.as_ref() != Some(&written) {
        layer_memo::remember(&memo, &memo_key, &written);
    }
    if !direct {
        let applied = daemon.apply(&blob, &mounts, Op::Build).await?;
        if applied.digest != diff_id {
            return Err(error(
                ErrorKind::Protocol,
                Op::Build,
                format!(
                    "the COPY layer applied as {}, not {}",
                    applied.digest, diff_id
                ),
            ));
        }
    }
    commit_layer(daemon, guard, &key, parent, blob, diff_id).await
}

/// A temporary folder of the build, named by `key` (the context a RUN step mounts is copied there).
pub(crate) fn tmp_dir(builder: &Builder<'_>, key: &str) -> PathBuf {
    builder.work_dir.join("tmp").join(key)
}

/// Commits active snapshot `key`, whose changes are layer `blob` (`diff_id` uncompressed), by chain id; when that
/// chain is already committed (another build made the same layer), the active snapshot is removed instead.
pub(crate) async fn commit_layer(
    daemon: &Daemon,
    guard: &Guard,
    key: &str,
    parent: Option<&str>,
    blob: Descriptor,
    diff_id: String,
) -> Result<Layer> {
    let chain = chain_id(parent, &diff_id);
    if !daemon
        .commit(&chain, key, HashMap::new(), Op::Build)
        .await?
    {
        daemon.remove_snapshot(key, Op::Build).await?;
    }
    guard.snapshot_done(key);
    Ok(Layer {
        blob,
        diff_id,
        chain,
    })
}
