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
use super::users::{inside, resolve, resolve_in, User};
use super::{export, mounts, pushed, Session};
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
    let workdir = config.workdir();
    make_workdir(instance, &workdir).await?;
    let user = user(instance, &config.user()).await.map_err(|why| {
        error(
            ErrorKind::BuildFailed,
            OP,
            format!("{description}: USER {}: {why}", config.user()),
        )
    })?;
    let step_mounts = if instance.remote {
        StepMounts::Remote(pushed::prepare(session, instance, run, &workdir, progress).await?)
    } else {
        let local = mounts::prepare(
            session,
            run,
            &workdir,
            &instance.rootfs,
            instance.shift(),
            progress,
        )
        .await?;
        StepMounts::Local(local)
    };
    let devices = match &step_mounts {
        StepMounts::Local(m) => m.devices.clone(),
        StepMounts::Remote(m) => m.devices.clone(),
    };
    let has_devices = !devices.is_empty();
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
            instance.set_step_devices(devices).await?;
        }
        instance.exec(&command, progress).await
    }
    .await;
    let removed = if has_devices {
        instance.set_step_devices(Map::new()).await
    } else {
        Ok(())
    };
    let (released, secrets) = match step_mounts {
        StepMounts::Local(m) => {
            m.release();
            (Ok(()), Vec::new())
        }
        StepMounts::Remote(m) => {
            let secrets = m.secrets.clone();
            (m.release(instance).await, secrets)
        }
    };
    let output = output?;
    removed?;
    released?;
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
    let out = session.work.join(format!("{}.tar.gz", unique_name()));
    let (before, shift) = (tree.clone(), instance.shift());
    let (written, after) = if instance.remote {
        let (export, after) = export::export(instance, &session.work).await?;
        // the secrets were removed before the export: one that is still there must reach no layer
        if let Some(left) = secrets
            .iter()
            .find(|s| after.contains_key(s.trim_start_matches('/')))
        {
            return Err(error(
                ErrorKind::BuildFailed,
                OP,
                format!("{description}: the secret mounted at {left} is still in the container after the step"),
            )
            .with_hint("the step must not make its own file at a secret's path; no layer was written"));
        }
        let now = after.clone();
        let written = blocking("the RUN layer", move || {
            tree::write_changes(&export, &before, &now, shift, &out)
        })
        .await?;
        (written, after)
    } else {
        let after = scan(&instance.rootfs).await?;
        let (root, now) = (instance.rootfs.clone(), after.clone());
        let written = blocking("the RUN layer", move || {
            tree::write_changes(&tree::Folder(&root), &before, &now, shift, &out)
        })
        .await?;
        (written, after)
    };
    *tree = after;
    store_layer(session, &written)
}

/// A step's mounts: disk devices of this machine's files, or what a remote server's step gets ([`pushed`]).
enum StepMounts {
    Local(mounts::StepMounts),
    Remote(pushed::RemoteMounts),
}

/// The user `spec` names, from the image's passwd and group files (read through the file API on a remote server).
async fn user(instance: &Instance, spec: &str) -> std::result::Result<User, String> {
    if !instance.remote {
        return resolve(&instance.rootfs, spec);
    }
    let mut texts = Vec::new();
    for file in ["/etc/passwd", "/etc/group"] {
        let text = instance
            .read_file(file)
            .await
            .map_err(|e| format!("reading {file}: {e}"))?
            .unwrap_or_default();
        texts.push(String::from_utf8_lossy(&text).into_owned());
    }
    resolve_in(&texts[0], &texts[1], spec)
}

/// The tree of the container's root folder: scanned here, or exported through the API from a remote server.
pub(crate) async fn snapshot(session: &Session<'_>, instance: &Instance) -> Result<Tree> {
    if instance.remote {
        return Ok(export::export(instance, &session.work).await?.1);
    }
    scan(&instance.rootfs).await
}

/// Makes the working folder, as Docker does, through the container (a folder on the way may be a symlink).
async fn make_workdir(instance: &Instance, workdir: &str) -> Result<()> {
    let exists = if instance.remote {
        instance.path_type(workdir).await?.as_deref() == Some("directory")
    } else {
        inside(&instance.rootfs, workdir).is_some_and(|p| p.is_dir())
    };
    if exists {
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
    let owner = match &step.chown {
        None => (0, 0),
        Some(spec) => user(instance, spec)
            .await
            .map(|u| (u.uid, u.gid))
            .map_err(|why| {
                error(
                    ErrorKind::BuildFailed,
                    OP,
                    format!("COPY --chown={spec}: {why}"),
                )
            })?,
    };
    let mut folders = Vec::new();
    for folder in copy::folders(&files) {
        let missing = if instance.remote {
            instance.path_type(&folder).await?.is_none()
        } else {
            inside(&instance.rootfs, &folder).is_none_or(|p| std::fs::symlink_metadata(p).is_err())
        };
        if missing {
            folders.push(folder);
        }
    }
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
    *tree = snapshot(session, instance).await?;
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
