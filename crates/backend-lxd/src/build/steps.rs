//! RUN and COPY steps in the build container, each giving a layer.
//!
//! A RUN step runs through LXD's exec API with the image's environment, working folder and user, its mounts as
//! disk devices; what it changed in the root folder becomes the layer ([`super::tree`]). A COPY step's layer is
//! written by berth from the context files (sorted, fixed times and owners: the same files give the same digest,
//! as on berth's containerd builder), and the same files go into the container through LXD's file API so later
//! steps see them.

use std::collections::BTreeMap;
use std::path::Path;

use berth_core::engine::Progress;
use berth_core::image_config::ImageConfig;
use berth_core::plan::{ContextSource, CopyStep, RunStep};
use berth_core::{ErrorKind, Operation, Result};
use berth_layer::copy::{self, CopiedFile};
use berth_layer::WrittenLayer;
use serde_json::Map;

use super::cache::Layer;
use super::tree::{self, Tree};
use super::users::{inside, resolve};
use super::{mounts, Session};
use crate::client::Body;
use crate::errors::{error, io_error};
use crate::instance::{unique_name, Command, Instance};
use crate::store::{descriptor, OCI_LAYER_GZIP};

const OP: Operation = Operation::Build;

/// Runs a RUN step; `tree` is the root folder before it, and after it on success.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn run_step(
    session: &Session<'_>,
    instance: &Instance,
    run: &RunStep,
    config: &ImageConfig,
    tree: &mut Tree,
    description: &str,
    progress: &dyn Progress,
) -> Result<Layer> {
    let rootfs = &instance.rootfs;
    let workdir = config.workdir();
    make_workdir(instance, &workdir).await?;
    let user = resolve(rootfs, &config.user()).map_err(|why| {
        error(
            ErrorKind::BuildFailed,
            OP,
            format!("{description}: USER {}: {why}", config.user()),
        )
    })?;
    let step_mounts =
        mounts::prepare(session, run, &workdir, rootfs, instance.shift(), progress).await?;
    let has_devices = !step_mounts.devices.is_empty();
    let mut argv = config.shell().to_vec();
    argv.push(run.command.clone());
    let env: BTreeMap<String, String> = config
        .run_env(&user.home)
        .into_iter()
        .filter_map(|e| {
            e.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    let command = Command {
        argv,
        env,
        cwd: workdir,
        uid: user.uid,
        gid: user.gid,
    };
    let output = async {
        if has_devices {
            instance
                .set_step_devices(step_mounts.devices.clone())
                .await?;
        }
        instance.exec(&command, progress).await
    }
    .await;
    let removed = if has_devices {
        instance.set_step_devices(Map::new()).await
    } else {
        Ok(())
    };
    step_mounts.release();
    let output = output?;
    removed?;
    if output.status != 0 {
        let tail = output.tail.join(
            "
",
        );
        return Err(error(
            ErrorKind::BuildFailed,
            OP,
            format!(
                "{description}: exited with status {}; its last output:\n{tail}",
                output.status
            ),
        )
        .with_hint("fix the command or the spec entry it comes from"));
    }
    let after = scan(rootfs).await?;
    let out = session.work.join(format!("{}.tar.gz", unique_name()));
    let (root, before, now, shift) = (
        rootfs.clone(),
        tree.clone(),
        after.clone(),
        instance.shift(),
    );
    let written = blocking("the RUN layer", move || {
        tree::write_changes(&root, &before, &now, shift, &out)
    })
    .await?;
    *tree = after;
    store_layer(session, &written)
}

/// Makes the working folder, as Docker does, through the container (a folder on the way may be a symlink).
async fn make_workdir(instance: &Instance, workdir: &str) -> Result<()> {
    if inside(&instance.rootfs, workdir).is_some_and(|p| p.is_dir()) {
        return Ok(());
    }
    let made = instance
        .exec(
            &Command {
                argv: vec!["mkdir".into(), "-p".into(), workdir.to_string()],
                env: BTreeMap::from([(
                    "PATH".into(),
                    berth_core::image_config::DEFAULT_PATH.into(),
                )]),
                cwd: "/".into(),
                uid: 0,
                gid: 0,
            },
            &berth_core::engine::NoProgress,
        )
        .await?;
    if made.status != 0 {
        return Err(error(
            ErrorKind::BuildFailed,
            OP,
            format!("WORKDIR {workdir}: cannot make it: {}", made.tail.join(" ")),
        ));
    }
    Ok(())
}

/// Runs a COPY step with the files [`copy::collect`] chose; `tree` as for [`run_step`].
pub(crate) async fn copy_step(
    session: &Session<'_>,
    instance: &Instance,
    step: &CopyStep,
    files: Vec<CopiedFile>,
    tree: &mut Tree,
) -> Result<Layer> {
    let rootfs = &instance.rootfs;
    let owner = match &step.chown {
        None => (0, 0),
        Some(spec) => resolve(rootfs, spec)
            .map(|u| (u.uid, u.gid))
            .map_err(|why| {
                error(
                    ErrorKind::BuildFailed,
                    OP,
                    format!("COPY --chown={spec}: {why}"),
                )
            })?,
    };
    let folders: Vec<String> = copy::folders(&files)
        .into_iter()
        .filter(|d| inside(rootfs, d).is_none_or(|p| std::fs::symlink_metadata(p).is_err()))
        .collect();
    let dir = session.work.join(unique_name());
    std::fs::create_dir_all(&dir).map_err(|e| io_error(OP, dir.display(), e))?;
    let (layer_files, layer_folders) = (files.clone(), folders.clone());
    let written = blocking("the COPY layer", move || {
        copy::write_layer(&layer_files, &layer_folders, owner, &dir)
    })
    .await?;
    let layer = store_layer(session, &written)?;
    for folder in &folders {
        instance.push_file(folder, None, owner, 0o755).await?;
    }
    for file in &files {
        let body = match &file.source {
            ContextSource::File(path) => Body::File(path.clone()),
            ContextSource::Bytes(bytes) => Body::Bytes(bytes.clone().into()),
        };
        instance
            .push_file(&file.target, Some(body), owner, file.mode)
            .await?;
    }
    *tree = scan(rootfs).await?;
    Ok(layer)
}

/// The tree of `rootfs`, scanned on a blocking thread.
pub(crate) async fn scan(rootfs: &Path) -> Result<Tree> {
    let root = rootfs.to_path_buf();
    blocking("the container's root folder", move || tree::scan(&root)).await
}

/// Runs file work on a blocking thread, turning its errors into berth's (a context file that changed while it
/// was read is a failed build, with the file's name).
async fn blocking<T: Send + 'static>(
    what: &'static str,
    work: impl FnOnce() -> std::io::Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| error(ErrorKind::Io, OP, format!("writing {what}: {e}")))?
        .map_err(|e| {
            if let Some(changed) = e.get_ref().and_then(|e| e.downcast_ref::<copy::SourceChanged>()) {
                return error(ErrorKind::BuildFailed, OP, changed.to_string())
                    .with_hint("something wrote to that file during the build; build again once it is finished");
            }
            io_error(OP, what, e)
        })
}

/// Moves a written layer into the store.
fn store_layer(session: &Session<'_>, written: &WrittenLayer) -> Result<Layer> {
    session.store.put_file(&written.path, &written.digest, OP)?;
    Ok(Layer {
        descriptor: descriptor(OCI_LAYER_GZIP, &written.digest, written.size),
        diff_id: written.diff_id.clone(),
    })
}
