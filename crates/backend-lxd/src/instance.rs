//! The build container: made from the base's LXD image, started, given disk devices for a step's mounts, asked
//! to run commands, and removed, with a guard that removes it when a build fails or is dropped. Containers and
//! folders a killed berth left (their pid is gone) are removed by the next build.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use berth_core::engine::{Leftover, Progress, ProgressEvent};
use berth_core::lines::{LineSplitter, Piece};
use berth_core::{ErrorKind, Operation, Result};
use http::Method;
use serde_json::{json, Map, Value};

use berth_layer::entries::IdShift;

use crate::api::Lxd;
use crate::errors::{error, io_error};
use crate::websocket;
use crate::LxdEngine;

/// Prefix of every container berth makes (`berth-<pid>-<n>`), so leftovers are easy to find.
pub const NAME_PREFIX: &str = "berth-";

/// The config key holding the pid of the berth process that made a container.
const PID_KEY: &str = "user.berth.pid";

/// The config key holding the name of the machine that berth process ran on: a remote server serves several
/// machines, and a pid says whether a build is gone only on its own.
const HOST_KEY: &str = "user.berth.host";

/// This machine's name.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

const OP: Operation = Operation::Build;

/// What builds left or hold: berth's containers and build folders.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leftovers {
    /// Containers named with [`NAME_PREFIX`].
    pub instances: Vec<String>,
    /// Build folders under the state folder's `tmp/`.
    pub folders: Vec<PathBuf>,
}

impl Leftovers {
    /// Whether nothing is left.
    pub fn is_empty(&self) -> bool {
        self.instances.is_empty() && self.folders.is_empty()
    }
}

/// How many of a command's last lines [`Output`] keeps.
const TAIL: usize = 20;

/// How a command ended, and the last lines it printed.
pub(crate) struct Output {
    pub(crate) status: i64,
    pub(crate) tail: Vec<String>,
}

/// Passes a command's output stream to `progress` line by line, keeping the last [`TAIL`] lines in `tail`.
async fn relay(
    mut stream: websocket::WebSocket,
    progress: &dyn Progress,
    tail: &std::sync::Mutex<std::collections::VecDeque<String>>,
) -> std::io::Result<()> {
    let mut splitter = LineSplitter::default();
    let mut ended = false;
    loop {
        let piece = if ended {
            splitter.finish()
        } else {
            splitter.next_piece()
        };
        let line = match piece {
            Some(Piece::Line(line)) => String::from_utf8_lossy(&line).into_owned(),
            Some(Piece::Overlong) => {
                "(berth left out a line of output longer than 1 MiB)".to_string()
            }
            None if ended => return Ok(()),
            None => {
                match stream.next().await? {
                    Some(data) => splitter.push(&data),
                    None => ended = true,
                }
                continue;
            }
        };
        if let Ok(mut tail) = tail.lock() {
            if tail.len() == TAIL {
                tail.pop_front();
            }
            tail.push_back(line.clone());
        }
        progress.event(ProgressEvent::Line(line));
    }
}

/// A command for [`Instance::exec`].
pub(crate) struct Command {
    pub(crate) argv: Vec<String>,
    pub(crate) env: BTreeMap<String, String>,
    pub(crate) cwd: String,
    pub(crate) uid: u32,
    pub(crate) gid: u32,
}

/// A build container; removed by [`Instance::remove`], or in the background when dropped.
pub(crate) struct Instance {
    lxd: Lxd,
    pub(crate) name: String,
    /// Its root folder on this machine.
    pub(crate) rootfs: PathBuf,
    /// The build's folder of temporary files (secrets, context files for mounts).
    pub(crate) work: PathBuf,
    /// Its id map, once it has started.
    shift: std::sync::OnceLock<IdShift>,
    /// Whether it shares the host's network namespace (then LXD cannot hot-plug disks into it).
    host_network: std::sync::atomic::AtomicBool,
    removed: bool,
    /// Whether it is on a remote server (its root folder is not on this machine).
    pub(crate) remote: bool,
    /// The request creating it (it may still be on its way, or its operation running, when this is dropped).
    creation: crate::cleanup::Creation,
}

/// A new container name for this process.
pub(crate) fn unique_name() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{NAME_PREFIX}{}-{n}-{nanos:x}", std::process::id())
}

impl Instance {
    /// Names a build container and its folder; nothing is made yet, but both are removed when this is dropped.
    pub(crate) fn reserve(engine: &LxdEngine) -> Result<Instance> {
        let name = unique_name();
        let work = engine.state_dir.join("tmp").join(&name);
        std::fs::create_dir_all(&work).map_err(|e| io_error(OP, work.display(), e))?;
        crate::cleanup::reserved(&engine.lxd, engine.remote().is_some(), &name);
        Ok(Instance {
            lxd: engine.lxd.clone(),
            rootfs: engine.lxd_dir.join("containers").join(&name).join("rootfs"),
            name,
            work,
            shift: std::sync::OnceLock::new(),
            host_network: std::sync::atomic::AtomicBool::new(false),
            removed: false,
            remote: engine.remote().is_some(),
            creation: crate::cleanup::Creation::default(),
        })
    }

    /// The server's API.
    pub(crate) fn lxd(&self) -> &Lxd {
        &self.lxd
    }

    /// Creates the (stopped) container from image `alias`, unprivileged, in the host's network unless `isolated`.
    pub(crate) async fn create(
        &self,
        engine: &LxdEngine,
        alias: &str,
        isolated: bool,
    ) -> Result<()> {
        let init = crate::init::install(&engine.state_dir, &engine.architecture)?;
        let pushed = format!("/{}", crate::init::PUSHED_NAME);
        let init_path = if self.remote {
            pushed.as_str()
        } else {
            crate::init::INIT_PATH
        };
        let mut raw = format!("lxc.init.cmd = {init_path}\n");
        let mut devices = Map::new();
        if !self.remote {
            devices.insert(
                "berth-init".into(),
                json!({"type": "disk", "source": init, "path": init_path, "readonly": "true"}),
            );
        }
        if let Some(pool) = engine.options.pool() {
            // a root disk of the container's own overrides the default profile's: the step's writes go there
            devices.insert(
                "root".into(),
                json!({"type": "disk", "path": "/", "pool": pool}),
            );
        }
        self.host_network.store(!isolated, Ordering::Relaxed);
        if !isolated {
            // LXD refuses `lxc.net.*` keys; sharing the server's namespace is allowed (LXD runs in the host's).
            // A user namespace may not mount a sysfs of a network namespace it does not own (the start fails
            // with EPERM), nor the cgroup tree that lives in it: the container gets /proc only
            raw.push_str(&format!(
                "lxc.namespace.share.net = {}\nlxc.mount.auto =\nlxc.mount.auto = proc:rw\n",
                engine.server_pid
            ));
            devices.insert(
                "berth-resolv".into(),
                json!({"type": "disk", "source": "/etc/resolv.conf", "path": "/etc/resolv.conf", "readonly": "true"}),
            );
        }
        let config = json!({
            "raw.lxc": raw,
            PID_KEY: std::process::id().to_string(),
            HOST_KEY: host_name(),
        });
        let body = json!({
            "name": self.name,
            "type": "container",
            "description": "a berth build",
            "source": {"type": "image", "alias": alias},
            "config": config,
            "devices": devices,
            "profiles": ["default"],
        });
        self.creation.send(&self.lxd, body).await?;
        if self.remote {
            self.push_file(
                &pushed,
                Some(crate::client::Body::File(init)),
                (0, 0),
                0o755,
            )
            .await?;
        }
        Ok(())
    }

    /// Starts the container and reads the id map LXD gave it.
    pub(crate) async fn start(&self) -> Result<()> {
        let body = json!({"action": "start", "timeout": 30});
        let path = format!("/1.0/instances/{}", self.name);
        self.lxd
            .call(OP, Method::PUT, &format!("{path}/state"), Some(&body))
            .await
            .map_err(|e| {
                e.with_hint(
                    "see the container's log in LXD's logs folder; `lxc info --show-log` names it",
                )
            })?;
        let current = self.lxd.call(OP, Method::GET, &path, None).await?;
        let map = current["config"]["volatile.last_state.idmap"]
            .as_str()
            .unwrap_or("[]");
        let shift = id_shift(map).ok_or_else(|| {
            error(
                ErrorKind::Protocol,
                OP,
                format!("LXD gave container {} no id map of root: {map}", self.name),
            )
        })?;
        let _ = self.shift.set(shift);
        Ok(())
    }

    /// The container's id map, once started.
    pub(crate) fn shift(&self) -> Option<IdShift> {
        self.shift.get().copied()
    }

    /// Runs a command, streaming its output (stdout and stderr, line by line) to `progress`, and returns how
    /// it ended with its last lines.
    pub(crate) async fn exec(&self, command: &Command, progress: &dyn Progress) -> Result<Output> {
        let body = json!({
            "command": command.argv,
            "environment": command.env,
            "cwd": command.cwd,
            "user": command.uid,
            "group": command.gid,
            "wait-for-websocket": true,
            "interactive": false,
            "record-output": false,
        });
        let path = format!("/1.0/instances/{}/exec", self.name);
        let (operation, meta) = self.lxd.start(OP, Method::POST, &path, &body).await?;
        let stream = |fd: &str| {
            let secret = meta["fds"][fd].as_str().unwrap_or_default().to_string();
            let url = format!("{operation}/websocket?secret={secret}");
            let client = self.lxd.client().clone();
            async move { websocket::connect(&client, &url).await }
        };
        let lost = |e: std::io::Error| error(ErrorKind::Protocol, OP, format!("LXD {path}: {e}"));
        // LXD starts the command once every stream is connected
        let mut control = stream("control").await.map_err(lost)?;
        let mut stdin = stream("0").await.map_err(lost)?;
        let stdout = stream("1").await.map_err(lost)?;
        let stderr = stream("2").await.map_err(lost)?;
        // the end of the input; a command that has already ended (a quick `echo` on a busy machine) may have had
        // its stdin stream closed by LXD first, and then there is nothing left to end
        if let Err(e) = stdin.close().await {
            let gone = [
                std::io::ErrorKind::BrokenPipe,
                std::io::ErrorKind::ConnectionReset,
            ];
            if !gone.contains(&e.kind()) {
                return Err(lost(e));
            }
        }
        let tail = std::sync::Mutex::new(std::collections::VecDeque::new());
        let (out, err) = tokio::join!(
            relay(stdout, progress, &tail),
            relay(stderr, progress, &tail)
        );
        out.and(err).map_err(lost)?;
        let _ = control.close().await;
        let done = self.lxd.wait(OP, &path, &operation).await?;
        let status = done["return"].as_i64().ok_or_else(|| {
            error(
                ErrorKind::Protocol,
                OP,
                format!("LXD {path}: no exit status"),
            )
        })?;
        let tail = tail.into_inner().unwrap_or_default().into_iter().collect();
        Ok(Output { status, tail })
    }

    /// Writes one file or folder through the file API (owner and mode as given).
    pub(crate) async fn push_file(
        &self,
        path: &str,
        content: Option<crate::client::Body>,
        owner: (u32, u32),
        mode: u32,
    ) -> Result<()> {
        let (kind, body) = match content {
            Some(body) => ("file", body),
            None => ("directory", crate::client::Body::Empty),
        };
        let headers = [
            ("X-LXD-type", kind.to_string()),
            ("X-LXD-uid", owner.0.to_string()),
            ("X-LXD-gid", owner.1.to_string()),
            ("X-LXD-mode", format!("{mode:04o}")),
            ("X-LXD-write", "overwrite".to_string()),
            ("Content-Type", "application/octet-stream".to_string()),
        ];
        self.lxd
            .send(OP, Method::POST, &self.file_url(path), &headers, body)
            .await
            .map(drop)
    }

    /// Makes symlink `path` to `target` through the file API.
    pub(crate) async fn push_symlink(&self, path: &str, target: &str) -> Result<()> {
        let headers = [
            ("X-LXD-type", "symlink".to_string()),
            ("X-LXD-write", "overwrite".to_string()),
            ("Content-Type", "application/octet-stream".to_string()),
        ];
        let body = crate::client::Body::Bytes(target.to_string().into_bytes().into());
        self.lxd
            .send(OP, Method::POST, &self.file_url(path), &headers, body)
            .await
            .map(drop)
    }

    fn file_url(&self, path: &str) -> String {
        format!(
            "/1.0/instances/{}/files?path={}",
            self.name,
            query_escape(path)
        )
    }

    /// What `path` is in the container (`file`, `directory`, `symlink`), through the file API; `None` when
    /// there is nothing.
    pub(crate) async fn path_type(&self, path: &str) -> Result<Option<String>> {
        Ok(self.read(path).await?.map(|(kind, _)| kind))
    }

    /// The contents of file `path` in the container, `None` when there is none.
    pub(crate) async fn read_file(&self, path: &str) -> Result<Option<Vec<u8>>> {
        Ok(self
            .read(path)
            .await?
            .filter(|(kind, _)| kind == "file")
            .map(|(_, body)| body))
    }

    async fn read(&self, path: &str) -> Result<Option<(String, Vec<u8>)>> {
        let url = self.file_url(path);
        let answer = self
            .lxd
            .client()
            .send(Method::GET, &url, &[], crate::client::Body::Empty)
            .await
            .map_err(|e| crate::errors::unavailable(self.lxd.client(), &e, OP))?;
        if answer.status == http::StatusCode::NOT_FOUND {
            return Ok(None);
        }
        if !answer.status.is_success() {
            return Err(error(
                ErrorKind::Protocol,
                OP,
                format!(
                    "LXD {url}: {} ({})",
                    String::from_utf8_lossy(&answer.body),
                    answer.status
                ),
            ));
        }
        let kind = answer
            .headers
            .get("X-LXD-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("file")
            .to_string();
        Ok(Some((kind, answer.body.to_vec())))
    }

    /// Removes `path` (a file, or an empty folder) through the file API; nothing there is fine.
    pub(crate) async fn delete_file(&self, path: &str) -> Result<()> {
        match self
            .lxd
            .call(OP, Method::DELETE, &self.file_url(path), None)
            .await
        {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Replaces the container's berth devices for a step (`devices` by name; an empty map removes them all).
    /// A container in the host's network namespace is stopped for it and started again: LXD's hot-plug
    /// (`forkmount lxc-mount`) fails on an unprivileged container whose network namespace is the host's, while
    /// disks given before a start are mounted as any other (only the init program runs between steps).
    pub(crate) async fn set_step_devices(&self, devices: Map<String, Value>) -> Result<()> {
        let path = format!("/1.0/instances/{}", self.name);
        let restart = self.host_network.load(Ordering::Relaxed);
        if restart {
            let stop = json!({"action": "stop", "force": true});
            self.lxd
                .call(OP, Method::PUT, &format!("{path}/state"), Some(&stop))
                .await?;
        }
        let current = self.lxd.call(OP, Method::GET, &path, None).await?;
        let mut all: Map<String, Value> =
            current["devices"].as_object().cloned().unwrap_or_default();
        all.retain(|name, _| !name.starts_with("step-"));
        all.extend(devices);
        let body = json!({
            "architecture": current["architecture"],
            "config": current["config"],
            "devices": all,
            "ephemeral": current["ephemeral"],
            "profiles": current["profiles"],
            "stateful": current["stateful"],
            "description": current["description"],
        });
        self.lxd.call(OP, Method::PUT, &path, Some(&body)).await?;
        if restart {
            self.start().await?;
        }
        Ok(())
    }

    /// Stops and deletes the container (once LXD has answered the request creating it, and ended its work on
    /// it) and removes the build's folder.
    pub(crate) async fn remove(mut self) -> Result<()> {
        self.removed = true;
        let result = crate::cleanup::remove(&self.lxd, &self.name, &self.creation).await;
        let _ = std::fs::remove_dir_all(&self.work);
        result
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        crate::cleanup::released(&self.name);
        if self.removed {
            return;
        }
        // a dropped build (Ctrl-C, a failed step) still removes its container, in the background
        let _ = std::fs::remove_dir_all(&self.work);
        crate::cleanup::remove_in_background(
            self.lxd.clone(),
            self.name.clone(),
            self.creation.clone(),
        );
    }
}

/// Stops (forcibly) and deletes container `name`; one that does not exist is fine. LXD refuses both while
/// another operation on the container runs (a berth killed while its container was starting leaves one for a
/// moment), so they are tried again for a while.
pub(crate) async fn delete(lxd: &Lxd, name: &str) -> Result<()> {
    const ATTEMPTS: u32 = 30;
    let stop = json!({"action": "stop", "force": true});
    let mut attempt = 1;
    loop {
        let _ = lxd
            .call(
                OP,
                Method::PUT,
                &format!("/1.0/instances/{name}/state"),
                Some(&stop),
            )
            .await;
        match lxd
            .call(OP, Method::DELETE, &format!("/1.0/instances/{name}"), None)
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) if attempt >= ATTEMPTS || e.kind() == ErrorKind::EngineUnavailable => {
                return Err(e.with_hint(format!("remove it yourself: `lxc delete --force {name}`")))
            }
            Err(_) => {
                tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                attempt += 1;
            }
        }
    }
}

/// The pid in a berth name (`berth-<pid>-...`).
pub(crate) fn pid_of(name: &str) -> Option<u32> {
    name.strip_prefix(NAME_PREFIX)?
        .split('-')
        .next()?
        .parse()
        .ok()
}

fn alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The names of the containers on `lxd` that `wanted` accepts.
pub(crate) async fn instance_names(
    lxd: &Lxd,
    wanted: impl Fn(&str) -> bool,
) -> Result<Vec<String>> {
    let names = lxd
        .call(Operation::Inspect, Method::GET, "/1.0/instances", None)
        .await?;
    Ok(names
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .filter_map(|url| url.rsplit('/').next())
        .filter(|name| wanted(name))
        .map(str::to_string)
        .collect())
}

/// berth's containers and build folders on this server.
pub(crate) async fn leftovers(engine: &LxdEngine) -> Result<Leftovers> {
    let instances = instance_names(&engine.lxd, |name| name.starts_with(NAME_PREFIX)).await?;
    let folders = std::fs::read_dir(engine.state_dir.join("tmp"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(NAME_PREFIX))
        })
        .collect();
    Ok(Leftovers { instances, folders })
}

/// The containers and build folders of berth processes that are gone (killed mid-build), as leftovers.
pub(crate) async fn dead_leftovers(engine: &LxdEngine) -> Result<Vec<Leftover>> {
    let (instances, folders) = dead(engine).await?;
    Ok(instances
        .iter()
        .map(|name| instance_leftover(name))
        .chain(folders.iter().map(|f| folder_leftover(f)))
        .collect())
}

fn instance_leftover(name: &str) -> Leftover {
    Leftover {
        what: format!(
            "LXD container {name} of a build by berth process {}",
            pid_of(name).unwrap_or(0)
        ),
        age: None,
        removed_by_next_run: true,
    }
}

fn folder_leftover(folder: &Path) -> Leftover {
    let age = std::fs::metadata(folder)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| std::time::SystemTime::now().duration_since(t).ok());
    Leftover {
        what: format!("build folder {}", folder.display()),
        age,
        removed_by_next_run: true,
    }
}

/// The containers and folders of berth processes that are gone.
async fn dead(engine: &LxdEngine) -> Result<(Vec<String>, Vec<PathBuf>)> {
    let found = leftovers(engine).await?;
    let dead = |name: &str| pid_of(name).is_some_and(|pid| !alive(pid));
    let mut instances = Vec::new();
    for name in found.instances.into_iter().filter(|n| dead(n)) {
        // a pid names a process of the machine that made the container: on a remote server, only that one's
        if engine.remote().is_none() || made_here(&engine.lxd, &name).await {
            instances.push(name);
        }
    }
    let folders = found
        .folders
        .into_iter()
        .filter(|f| f.file_name().and_then(|n| n.to_str()).is_some_and(dead))
        .collect();
    Ok((instances, folders))
}

/// Removes the containers and folders of berth processes that are gone (killed mid-build); what it removed.
pub(crate) async fn remove_dead(engine: &LxdEngine) -> Result<Vec<Leftover>> {
    let (instances, folders) = dead(engine).await?;
    let mut removed = Vec::new();
    for name in &instances {
        // another build may be removing it too: what matters is that it goes
        if let Err(e) = delete(&engine.lxd, name).await {
            let still_there = engine
                .lxd
                .call(
                    Operation::Inspect,
                    Method::GET,
                    &format!("/1.0/instances/{name}"),
                    None,
                )
                .await
                .is_ok();
            if still_there {
                return Err(e);
            }
        }
        removed.push(instance_leftover(name));
    }
    for folder in folders {
        let leftover = folder_leftover(&folder);
        if std::fs::remove_dir_all(&folder).is_ok() {
            removed.push(leftover);
        }
    }
    Ok(removed)
}

/// Whether container `name` on a remote server was made by a berth on this machine (one made before berth
/// recorded the machine counts as this one's).
pub(crate) async fn made_here(lxd: &Lxd, name: &str) -> bool {
    let path = format!("/1.0/instances/{name}");
    match lxd.call(Operation::Inspect, Method::GET, &path, None).await {
        Ok(instance) => instance["config"][HOST_KEY]
            .as_str()
            .is_none_or(|host| host == host_name()),
        Err(_) => false,
    }
}

/// The map of the container's uid and gid 0 from LXD's `volatile.last_state.idmap` (a JSON list of
/// `{Isuid, Isgid, Hostid, Nsid, Maprange}`).
fn id_shift(map: &str) -> Option<IdShift> {
    let entries: Vec<Value> = serde_json::from_str(map).ok()?;
    let of = |kind: &str| {
        entries
            .iter()
            .find(|e| e[kind] == true && e["Nsid"] == 0)
            .and_then(|e| Some((e["Hostid"].as_u64()?, e["Maprange"].as_u64()?)))
            .and_then(|(host, range)| Some((u32::try_from(host).ok()?, u32::try_from(range).ok()?)))
    };
    let ((uid, uids), (gid, gids)) = (of("Isuid")?, of("Isgid")?);
    Some(IdShift {
        uid,
        gid,
        range: uids.min(gids),
    })
}

/// `path` escaped for a query string.
fn query_escape(path: &str) -> String {
    let mut out = String::new();
    for b in path.bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_the_pid() {
        let name = unique_name();
        assert_eq!(pid_of(&name), Some(std::process::id()));
        assert!(name.len() < 64 && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'));
        assert_eq!(pid_of("berth-x-1"), None);
        assert_eq!(query_escape("/a b/ü"), "/a%20b/%C3%BC");
    }

    #[test]
    fn the_id_map_is_read_from_lxd() {
        let map = r#"[{"Isuid":true,"Isgid":false,"Hostid":165536,"Nsid":0,"Maprange":10000001},
            {"Isuid":false,"Isgid":true,"Hostid":165536,"Nsid":0,"Maprange":10000001}]"#;
        assert_eq!(
            id_shift(map),
            Some(IdShift {
                uid: 165536,
                gid: 165536,
                range: 10000001
            })
        );
        assert_eq!(id_shift("[]"), None);
    }
}
