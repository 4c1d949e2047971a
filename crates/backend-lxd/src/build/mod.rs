//! Executing a build plan on LXD, step by step.
//!
//! The base (and any helper image a step mounts from) comes from berth's store or is pulled into it. Config
//! steps edit the image config; RUN and COPY steps each add a layer ([`steps`]), looked up in berth's step cache
//! first ([`cache`]). The build container is made at the first step the cache does not have: from the base's
//! LXD image ([`crate::base`]), with the cached layers of the steps before it unpacked into its root folder
//! before it starts (on a remote server, whose folders berth does not touch, imported with the base as one LXD
//! image). A remote container's root folder is read through an export ([`export`]) and its mounts are pushed
//! files and custom volumes ([`pushed`]). At the end berth writes the config and an OCI manifest into the store and names each tag.
//! The container and the build's folder are removed however the build ends ([`crate::instance`]).

mod cache;
mod export;
mod mounts;
mod pushed;
mod steps;
mod tree;
mod users;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::SystemTime;

use berth_core::engine::{BuildOptions, BuiltImage, Network, Progress, ProgressEvent};
use berth_core::image_config::ImageConfig;
use berth_core::plan::{BuildPlan, CopyStep, Step};
use berth_core::{Error, ErrorKind, Operation, Result};
use berth_layer::copy::{self, CopiedFile};
use berth_layer::oci::{chain_id, rfc3339};
use berth_registry::RegistryClient;
use serde_json::json;

use self::cache::{Layer, StepCache, PENDING_TIME};
use self::tree::Tree;
use crate::base::{lxd_image, unpack_image, unpack_layer};
use crate::errors::{error, io_error};
use crate::instance::{remove_dead, Instance};
use crate::pull::{image_name, local_or_pull};
use crate::store::{descriptor, LocalImage, Store, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use crate::{LxdEngine, ENGINE};

const OP: Operation = Operation::Build;

/// What the steps of one build share.
pub(crate) struct Session<'a> {
    engine: &'a LxdEngine,
    pub(crate) plan: &'a BuildPlan,
    pub(crate) store: Store,
    registry: RegistryClient,
    pub(crate) state_dir: PathBuf,
    /// The build's folder of temporary files.
    pub(crate) work: PathBuf,
    network: Network,
    /// Helper images by alias: manifest digest and unpacked root folder.
    helpers: tokio::sync::Mutex<HashMap<String, (String, PathBuf)>>,
}

impl Session<'_> {
    /// The image `reference` names, from the store or pulled, its use recorded for pruning: a name this build
    /// pulls may go once builds stop using it; one the user made stays.
    async fn image(&self, reference: &str, progress: &dyn Progress) -> Result<LocalImage> {
        let name = image_name(reference, OP)?;
        let known = self.store.resolve(&name, OP)?.is_some();
        let image = local_or_pull(&self.store, &self.registry, reference, OP, progress).await?;
        crate::prune::Bases::new(&self.state_dir).used(&name, &image.manifest_digest, !known);
        Ok(image)
    }

    /// The helper image `alias`: its manifest digest and its root folder, pulled and unpacked on first use.
    pub(crate) async fn helper(
        &self,
        alias: &str,
        progress: &dyn Progress,
    ) -> Result<(String, PathBuf)> {
        let mut helpers = self.helpers.lock().await;
        if let Some(found) = helpers.get(alias) {
            return Ok(found.clone());
        }
        let helper = self
            .plan
            .helper_images
            .iter()
            .find(|h| h.alias == alias)
            .ok_or_else(|| {
                error(
                    ErrorKind::InvalidSpec,
                    OP,
                    format!("a step mounts from image `{alias}`, which the plan does not name"),
                )
            })?;
        let image = self
            .image(&helper.reference, progress)
            .await
            .map_err(|e| e.context(format!("helper image {}", helper.reference)))?;
        let dir = self
            .state_dir
            .join("helpers")
            .join(image.manifest_digest.trim_start_matches("sha256:"));
        let root = dir.join("rootfs");
        crate::prune::touch(&dir.join("complete"));
        if !dir.join("complete").exists() {
            // unpacked beside, then renamed: another build never sees half a root folder
            let partial = self.work.join(format!("helper-{alias}"));
            let (store, img, to) = (self.store.clone(), image.clone(), partial.clone());
            tokio::task::spawn_blocking(move || unpack_image(&store, &img, &to, OP))
                .await
                .map_err(|e| error(ErrorKind::Io, OP, format!("unpacking {alias}: {e}")))??;
            std::fs::create_dir_all(&dir).map_err(|e| io_error(OP, dir.display(), e))?;
            if std::fs::rename(&partial, &root).is_ok() {
                std::fs::write(dir.join("complete"), "")
                    .map_err(|e| io_error(OP, dir.display(), e))?;
            }
        }
        let found = (image.manifest_digest.clone(), root);
        helpers.insert(alias.to_string(), found.clone());
        Ok(found)
    }
}

/// Builds `plan` and tags the result.
pub(crate) async fn build(
    engine: &LxdEngine,
    plan: &BuildPlan,
    options: &BuildOptions,
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let host = berth_core::platform::host_platform();
    if !plan.platform.is_empty() && plan.platform != host {
        return Err(Error::unsupported(
            ENGINE,
            "build",
            format!("cannot build for {} on this {host} machine", plan.platform),
        )
        .with_hint(format!(
            "build on a {} machine, or set `platform: {host}`",
            plan.platform
        )));
    }
    let names = options
        .tags
        .iter()
        .map(|t| image_name(t, OP))
        .collect::<Result<Vec<_>>>()?;
    let registry = engine.registry_client(
        options.credentials.iter().cloned(),
        &options.insecure_registries,
    )?;
    if let Err(e) = remove_dead(engine).await {
        progress.event(ProgressEvent::Warning(format!(
            "could not remove what earlier, killed builds left in LXD: {e}"
        )));
    }
    let _in_use = crate::prune::before_build(engine, progress).await?;
    let instance = Instance::reserve(engine)?;
    let session = Session {
        engine,
        plan,
        store: engine.store(OP)?,
        registry,
        state_dir: engine.state_dir.clone(),
        work: instance.work.clone(),
        network: options.network,
        helpers: tokio::sync::Mutex::default(),
    };
    let result = execute(&session, &instance, options.no_cache, &names, progress).await;
    let removed = instance.remove().await;
    let built = result?;
    removed?;
    Ok(built)
}

async fn execute(
    session: &Session<'_>,
    instance: &Instance,
    no_cache: bool,
    names: &[String],
    progress: &dyn Progress,
) -> Result<BuiltImage> {
    let plan = session.plan;
    let base = session
        .image(&plan.base_image, progress)
        .await
        .map_err(|e| e.context(format!("base image {}", plan.base_image)))?;
    let mut config = ImageConfig::from_base(&base.config);
    let mut layers: Vec<Layer> = base
        .layers()
        .into_iter()
        .zip(base.diff_ids())
        .map(|(mut d, diff_id)| {
            d["mediaType"] = json!(oci_layer_type(d["mediaType"].as_str().unwrap_or_default()));
            Layer {
                descriptor: d,
                diff_id,
            }
        })
        .collect();
    let base_count = layers.len();
    let mut chain = layers.iter().fold(None, |parent: Option<String>, l| {
        Some(chain_id(parent.as_deref(), &l.diff_id))
    });
    let cache = StepCache::new(session.state_dir.join("steps"));
    // the real time is set at the end, from the image's record (see `StepCache::created`)
    let created = PENDING_TIME;
    // the container's root folder as the last step left it, once the container runs
    let mut tree: Option<Tree> = None;
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
                mounts::identity(session, run, progress).await?
            ),
            Step::Copy(copy) => {
                let memo = session.state_dir.join(copy::DIGESTS_FOLDER);
                copied =
                    copy::collect_remembered(&plan.context, copy, &config.workdir(), Some(&memo))
                        .map_err(|e| e.with_engine(ENGINE))?;
                copy_identity(copy, &copied)
            }
            other => {
                config.apply(other);
                config.history(created, &description, true);
                continue;
            }
        };
        let key = StepCache::key(chain.as_deref(), &definition);
        // a remote container's root folder cannot take a cached layer: the step runs again there
        let cached = if no_cache || (instance.remote && tree.is_some()) {
            None
        } else {
            cache.get(&session.store, &key)?
        };
        let layer = match (cached, tree.as_mut()) {
            (Some(layer), None) => {
                progress.event(ProgressEvent::Line("using the cached layer".into()));
                layer
            }
            (Some(layer), Some(tree)) => {
                // a running container must see the cached step's changes too
                progress.event(ProgressEvent::Line("using the cached layer".into()));
                let blob = session.store.blob_path(layer.digest(), OP)?;
                unpack_layer(&instance.rootfs, &blob, instance.shift())
                    .map_err(|e| io_error(OP, "applying a cached layer", e))?;
                *tree = steps::snapshot(session, instance).await?;
                layer
            }
            (None, _) => {
                if tree.is_none() {
                    tree = Some(
                        start(session, instance, &base, &layers[base_count..], progress).await?,
                    );
                }
                let tree = tree
                    .as_mut()
                    .ok_or_else(|| error(ErrorKind::Protocol, OP, "no container"))?;
                let layer = match step {
                    Step::Run(run) => {
                        steps::run_step(
                            session,
                            instance,
                            run,
                            &config,
                            tree,
                            &description,
                            progress,
                        )
                        .await?
                    }
                    Step::Copy(copy) => {
                        steps::copy_step(session, instance, copy, std::mem::take(&mut copied), tree)
                            .await?
                    }
                    _ => unreachable!("config steps continue above"),
                };
                cache.put(&key, &layer)?;
                layer
            }
        };
        chain = Some(chain_id(chain.as_deref(), &layer.diff_id));
        layers.push(layer);
        config.history(created, &description, false);
    }
    finish(session, &cache, &base, &config, &layers, names)
}

/// Makes and starts the build container, with the cached layers of the steps so far in its root folder.
async fn start(
    session: &Session<'_>,
    instance: &Instance,
    base: &LocalImage,
    cached: &[Layer],
    progress: &dyn Progress,
) -> Result<Tree> {
    // a remote server's image holds the cached layers: its root folder is not here to unpack them into
    let above: Vec<String> = if instance.remote {
        cached.iter().map(|l| l.digest().to_string()).collect()
    } else {
        Vec::new()
    };
    let alias = lxd_image(
        session.engine,
        &session.store,
        base,
        &above,
        &session.work,
        progress,
    )
    .await?;
    instance
        .create(session.engine, &alias, session.network == Network::None)
        .await?;
    if !instance.remote {
        for layer in cached {
            let blob = session.store.blob_path(layer.digest(), OP)?;
            // in the host's ids: LXD shifts the whole root folder when the container first starts
            unpack_layer(&instance.rootfs, &blob, None)
                .map_err(|e| io_error(OP, "applying a cached layer", e))?;
        }
    }
    instance.start().await?;
    steps::snapshot(session, instance).await
}

/// What a COPY step's layer depends on: the owner and each file's destination, mode and contents.
fn copy_identity(step: &CopyStep, files: &[CopiedFile]) -> String {
    let mut definition = format!("COPY\n{}", step.chown.as_deref().unwrap_or(""));
    for file in files {
        definition.push_str(&format!(
            "\n{} {:o} {}",
            file.target, file.mode, file.digest
        ));
    }
    definition
}

/// The OCI media type of a layer of another type (Docker's gzip layers are the same bytes).
fn oci_layer_type(media_type: &str) -> &str {
    match media_type {
        "application/vnd.docker.image.rootfs.diff.tar.gzip" => OCI_LAYER_GZIP,
        "application/vnd.docker.image.rootfs.diff.tar" => "application/vnd.oci.image.layer.v1.tar",
        other => other,
    }
}

/// Writes the config and the manifest into the store and names the image with each of `names`.
fn finish(
    session: &Session<'_>,
    cache: &StepCache,
    base: &LocalImage,
    config: &ImageConfig,
    layers: &[Layer],
    names: &[String],
) -> Result<BuiltImage> {
    let diff_ids: Vec<String> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let to_json = |blob: &serde_json::Value| {
        serde_json::to_vec(blob)
            .map_err(|e| error(ErrorKind::Protocol, OP, format!("the image config: {e}")))
    };
    let mut blob = config.to_blob(&base.config, &diff_ids, PENDING_TIME);
    let created = cache.created(&to_json(&blob)?, &rfc3339(SystemTime::now()))?;
    cache::stamp(&mut blob, &created);
    let blob = to_json(&blob)?;
    let config_digest = session.store.put_bytes(&blob, OP)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": descriptor(OCI_CONFIG, &config_digest, blob.len() as u64),
        "layers": layers.iter().map(|l| l.descriptor.clone()).collect::<Vec<_>>(),
    });
    let bytes = serde_json::to_vec(&manifest)
        .map_err(|e| error(ErrorKind::Protocol, OP, format!("the manifest: {e}")))?;
    let digest = session.store.put_bytes(&bytes, OP)?;
    let target = descriptor(OCI_MANIFEST, &digest, bytes.len() as u64);
    for name in names {
        session.store.set_ref(name, &target, OP)?;
    }
    Ok(BuiltImage { id: config_digest })
}
