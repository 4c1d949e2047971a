//! A RUN step: a container and task on an active snapshot of the previous step, output streamed from FIFOs,
//! the exit status checked, then the snapshot's changes turned into a layer (berth writes an overlay snapshot's
//! upper folder; the diff service does it for other snapshotters) and committed by chain id.

use std::collections::{HashMap, VecDeque};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use berth_core::engine::{Progress, ProgressEvent};
use berth_core::plan::RunStep;
use berth_core::{ErrorKind, Result};
use nix::sys::stat::Mode;
use tokio::sync::mpsc;

use super::cache::Layer;
use super::spec::{runtime_spec, Process, HOST_FILES};
use super::{mounts, upper, Builder};
use crate::convert::{ContainerSpec, Daemon};
use crate::errors::{error, io_error, Op};
use crate::labels::{unique_id, UNCOMPRESSED};
use crate::rootfs::{resolve_user, RootfsView};
use berth_core::image_config::ImageConfig;

/// containerd's runc shim.
const RUNTIME: &str = "io.containerd.runc.v2";
/// The layer media type the diff service writes.
pub(crate) const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
/// Output lines a failed step's error quotes.
const TAIL: usize = 25;

/// Runs `run` on `parent` and returns the layer it made.
pub(crate) async fn run_step(
    builder: &Builder<'_>,
    run: &RunStep,
    config: &ImageConfig,
    parent: Option<&str>,
    description: &str,
    progress: &dyn Progress,
) -> Result<Layer> {
    let daemon = &builder.daemon;
    let guard = builder.guard;
    let id = unique_id("step");
    guard.snapshot(&id);
    let rootfs = daemon.prepare(&id, parent.unwrap_or(""), Op::Build).await?;
    let view = RootfsView::from_mounts(&rootfs)
        .filter(|v| v.upper().is_some())
        .ok_or_else(|| {
            error(
                ErrorKind::Unsupported,
                Op::Build,
                format!(
                    "snapshotter `{}` gives mounts berth cannot prepare RUN steps on",
                    daemon.snapshotter
                ),
            )
            .with_hint("use the overlayfs or native snapshotter (CONTAINERD_SNAPSHOTTER)")
        })?;
    let user_spec = config.user();
    let user = resolve_user(&view, &user_spec).map_err(|why| {
        error(
            ErrorKind::BuildFailed,
            Op::Build,
            format!("{description}: USER {user_spec}: {why}"),
        )
    })?;
    let cwd = config.workdir();
    view.create_dir_all(&cwd)
        .map_err(|e| io_error(Op::Build, format!("{description}: WORKDIR {cwd}"), e))?;

    let run_dir = builder.work_dir.join("run").join(&id);
    guard.dir(run_dir.clone());
    std::fs::create_dir_all(&run_dir).map_err(|e| io_error(Op::Build, run_dir.display(), e))?;
    let step_mounts = mounts::prepare(builder, run, &cwd, progress).await?;
    let stubs: Vec<_> = step_mounts
        .binds
        .iter()
        .map(|b| b.target.as_str())
        .chain(HOST_FILES.iter().copied())
        .map(|target| view.missing_below(target))
        .collect();

    let mut args = config.shell().to_vec();
    args.push(run.command.clone());
    let process = Process {
        args,
        env: config.run_env(&user.home),
        cwd,
        user,
    };
    let spec = ContainerSpec {
        id: id.clone(),
        image: builder.plan.base_image.clone(),
        runtime: RUNTIME.to_string(),
        spec: runtime_spec(
            &id,
            &builder.namespace,
            &process,
            &step_mounts.binds,
            builder.network,
        )
        .map_err(|e| {
            error(
                ErrorKind::InvalidSpec,
                Op::Build,
                format!("{description}: cannot describe the step as an OCI runtime spec: {e}"),
            )
        })?,
        snapshot_key: id.clone(),
        labels: HashMap::from([(
            "berth.build.step".to_string(),
            description.chars().take(200).collect(),
        )]),
    };
    guard.container(&id);
    daemon.create_container(&spec, Op::Build).await?;
    let status = execute(daemon, guard, &id, &run_dir, progress).await;
    crate::cleanup::stop_task(daemon, &id).await?;
    guard.task_done(&id);
    daemon.delete_container(&id, Op::Build).await?;
    guard.container_done(&id);
    for view_key in &step_mounts.views {
        daemon.remove_snapshot(view_key, Op::Build).await?;
        guard.snapshot_done(view_key);
    }
    drop(step_mounts);
    let (status, tail) = status?;
    if status != 0 {
        let output = if tail.is_empty() {
            String::from("(no output)")
        } else {
            tail.join("\n")
        };
        return Err(error(
            ErrorKind::BuildFailed,
            Op::Build,
            format!("{description}: exited with status {status}; its last output:\n{output}"),
        )
        .with_hint("fix the command (its full output is above), or the spec it comes from"));
    }

    for prefixes in &stubs {
        view.remove_stubs(prefixes);
    }
    let feature = super::overlay::incomplete_upper(&rootfs);
    if let Some(feature) = feature {
        progress.event(ProgressEvent::Line(format!(
            "the snapshot's overlay mount uses {feature}: containerd's diff service writes the layer"
        )));
    }
    let upper = view
        .upper()
        .filter(|_| is_overlay(&rootfs) && feature.is_none());
    if let Some(upper) = upper {
        match layer_from_upper(builder, &id, parent, upper).await {
            Err(e) if e.kind() == ErrorKind::Unsupported => {
                progress.event(ProgressEvent::Line(format!(
                    "{e}; containerd's diff service writes the layer"
                )));
            }
            written => return written,
        }
    }
    diff(daemon, guard, &id, parent, &rootfs).await
}

/// Whether the step's snapshot is an overlay (its upper folder then holds exactly the step's changes).
fn is_overlay(mounts: &[crate::convert::MountSpec]) -> bool {
    matches!(mounts, [m] if m.kind == "overlay")
}

/// Writes active snapshot `key`'s upper folder as a layer, stores it and commits the snapshot by chain id.
async fn layer_from_upper(
    builder: &Builder<'_>,
    key: &str,
    parent: Option<&str>,
    upper: &Path,
) -> Result<Layer> {
    let from = upper.to_path_buf();
    let (blob, diff_id) = super::blob::write_layer_blob(builder, "the RUN layer", move |out| {
        upper::stream_upper_layer(&from, out)
    })
    .await?;
    super::commit_layer(&builder.daemon, builder.guard, key, parent, blob, diff_id).await
}

/// Turns active snapshot `key` (mounted by `upper`) into a layer and commits it by chain id.
async fn diff(
    daemon: &Daemon,
    guard: &crate::cleanup::Guard,
    key: &str,
    parent: Option<&str>,
    upper: &[crate::convert::MountSpec],
) -> Result<Layer> {
    let lower = match parent {
        Some(parent) => {
            let view = unique_id("view");
            guard.snapshot(&view);
            let mounts = daemon.view(&view, parent, Op::Build).await?;
            Some((view, mounts))
        }
        None => None,
    };
    let lower_mounts = lower.as_ref().map(|(_, m)| m.clone()).unwrap_or_default();
    let blob = daemon
        .diff(&lower_mounts, upper, LAYER_GZIP, HashMap::new(), Op::Build)
        .await?;
    if let Some((view, _)) = lower {
        daemon.remove_snapshot(&view, Op::Build).await?;
        guard.snapshot_done(&view);
    }
    let diff_id = daemon
        .content_labels(&blob.digest, Op::Build)
        .await?
        .and_then(|labels| labels.get(UNCOMPRESSED).cloned())
        .ok_or_else(|| {
            error(
                ErrorKind::Protocol,
                Op::Build,
                format!("layer {} has no uncompressed digest", blob.digest),
            )
        })?;
    super::commit_layer(daemon, guard, key, parent, blob, diff_id).await
}

/// Creates the task, streams its output, and waits for its exit status; returns it with the last lines.
async fn execute(
    daemon: &Daemon,
    guard: &crate::cleanup::Guard,
    id: &str,
    run_dir: &Path,
    progress: &dyn Progress,
) -> Result<(u32, Vec<String>)> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let mut fifos = Vec::new();
    for name in ["stdout", "stderr"] {
        let path = run_dir.join(name);
        nix::unistd::mkfifo(&path, Mode::from_bits_truncate(0o600))
            .map_err(|e| io_error(Op::Build, path.display(), std::io::Error::from(e)))?;
        let tx = tx.clone();
        let reader = path.clone();
        // opening blocks until the shim opens the other end, so it happens on a blocking thread
        tokio::task::spawn_blocking(move || {
            let Ok(file) = std::fs::File::open(&reader) else {
                return;
            };
            // lines of at most 1 MiB: a step printing without newlines must not grow one buffer for ever
            let overlong = "(berth left out a line of output longer than 1 MiB)";
            for line in berth_core::lines::bounded_lines(file, overlong) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        fifos.push(path);
    }
    drop(tx);
    let mut tail = VecDeque::new();
    let mut emit = |line: String| {
        if tail.len() == TAIL {
            tail.pop_front();
        }
        tail.push_back(line.clone());
        progress.event(ProgressEvent::Line(line));
    };
    let started = async {
        guard.task(id);
        let path = |p: &PathBuf| p.display().to_string();
        daemon
            .create_task(
                id,
                &daemon.mounts(id, Op::Build).await?,
                &path(&fifos[0]),
                &path(&fifos[1]),
                Op::Build,
            )
            .await?;
        daemon.start_task(id, Op::Build).await?;
        daemon.wait_task(id, Op::Build).await
    };
    tokio::pin!(started);
    let status = loop {
        tokio::select! {
            status = &mut started => break status,
            Some(line) = rx.recv() => emit(line),
        }
    };
    // the readers end when the shim closes the FIFOs; release them in case the task never opened them
    for fifo in &fifos {
        release_fifo(fifo);
    }
    let drain = async {
        while let Some(line) = rx.recv().await {
            emit(line);
        }
    };
    let _ = tokio::time::timeout(Duration::from_secs(10), drain).await;
    Ok((status?, tail.into_iter().collect()))
}

/// Opens a FIFO for writing without blocking and closes it: a reader blocked in `open` wakes up (and then sees
/// the end once every writer is gone).
pub(crate) fn release_fifo(path: &Path) {
    let _ = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(nix::fcntl::OFlag::O_NONBLOCK.bits())
        .open(path);
}
