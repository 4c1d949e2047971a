//! Pruning berth's LXD state: what builds leave and nothing names any more goes, at the start of each build (as
//! containerd's builder drops its old step-cache records) or through [`crate::LxdEngine::prune`].
//!
//! - Step-cache entries (and image creation records) unused for longer than the limit; a hit counts as a use.
//! - Base and helper images a build pulled (not ones the user pulled, built or tagged), unused by builds for longer
//!   than the limit: their names go from the store. [`Bases`] records them.
//! - Blobs nothing reaches any more: the store's names (their manifests, configs and layers) and the step-cache
//!   entries left are the roots.
//! - LXD images this state folder imported (`berth-base-<manifest>`) whose manifest is gone, or unused for longer
//!   than the limit (they are imported again from the store when needed), and unpacked helper roots alike.
//! - Temporary files of berth processes that are gone.
//!
//! Nothing a running build uses goes: every build (and pull) holds a shared `flock` on `gc.lock` in the state
//! folder from its start to its end, and pruning runs only when it gets the exclusive lock at once; when a build
//! runs, pruning waits for a later build.

use std::collections::HashSet;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use berth_core::{ErrorKind, Operation, Result};
use http::Method;
use rustix::fs::FlockOperation;
use serde_json::{json, Value};

use crate::errors::{error, io_error};
use crate::store::{valid_digest, Store};
use crate::LxdEngine;

const OP: Operation = Operation::Remove;

/// How long a step-cache entry, a pulled base or an imported LXD image may go unused before a build prunes it
/// (containerd's builder keeps its step cache as long).
pub const MAX_UNUSED: Duration = Duration::from_secs(7 * 24 * 3600);

/// What a prune removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pruned {
    /// `false` when a build held the state folder, so nothing was looked at.
    pub ran: bool,
    /// Step-cache entries (and image creation records) removed.
    pub step_entries: usize,
    /// Names of pulled bases and helpers removed from the store.
    pub bases: Vec<String>,
    /// Blobs removed from the store.
    pub blobs: usize,
    /// Their size.
    pub blob_bytes: u64,
    /// Aliases of the LXD images deleted.
    pub lxd_images: Vec<String>,
    /// Unpacked helper images removed.
    pub helper_roots: usize,
}

/// The shared lock a build or pull holds on the state folder while it runs.
pub(crate) struct InUse {
    _lock: File,
}

fn lock_file(state_dir: &Path) -> Result<File> {
    fs::create_dir_all(state_dir).map_err(|e| io_error(OP, state_dir.display(), e))?;
    let path = state_dir.join("gc.lock");
    File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| io_error(OP, path.display(), e))
}

/// Waits for the shared lock (only a prune holds it exclusively, briefly).
async fn share(file: File, state_dir: &Path) -> Result<InUse> {
    let shown = state_dir.join("gc.lock").display().to_string();
    tokio::task::spawn_blocking(move || {
        rustix::fs::flock(&file, FlockOperation::LockShared).map(|()| InUse { _lock: file })
    })
    .await
    .map_err(|e| error(ErrorKind::Io, OP, format!("waiting for {shown}: {e}")))?
    .map_err(|e| io_error(OP, shown, e.into()))
}

/// Marks the state folder in use, for a pull.
pub(crate) async fn in_use(state_dir: &Path) -> Result<InUse> {
    share(lock_file(state_dir)?, state_dir).await
}

/// For a build: prunes what went unused for [`MAX_UNUSED`] when no other build runs, then marks the state folder
/// in use. A failed prune is only reported: the build goes on.
pub(crate) async fn before_build(
    engine: &LxdEngine,
    progress: &dyn berth_core::engine::Progress,
) -> Result<InUse> {
    let file = lock_file(&engine.state_dir)?;
    if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_ok() {
        if let Err(e) = prune_locked(engine, MAX_UNUSED).await {
            progress.event(berth_core::engine::ProgressEvent::Warning(format!(
                "could not prune berth's LXD state: {e}"
            )));
        }
    }
    // from exclusive to shared: a prune of another berth that gets in between ends before this build begins
    share(file, &engine.state_dir).await
}

/// Prunes what went unused for longer than `max_unused`, unless a build holds the state folder.
pub(crate) async fn prune(engine: &LxdEngine, max_unused: Duration) -> Result<Pruned> {
    let file = lock_file(&engine.state_dir)?;
    if rustix::fs::flock(&file, FlockOperation::NonBlockingLockExclusive).is_err() {
        return Ok(Pruned::default());
    }
    prune_locked(engine, max_unused).await
}

/// Whether `path` was last used (modified) longer than `max_unused` ago.
fn unused(path: &Path, max_unused: Duration) -> bool {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| SystemTime::now().duration_since(t).ok())
        .is_some_and(|age| age > max_unused)
}

/// Marks `path` used now.
pub(crate) fn touch(path: &Path) {
    if let Ok(file) = File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The entries of folder `dir` (none when it is absent).
fn entries(dir: &Path) -> Vec<PathBuf> {
    fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect()
}

async fn prune_locked(engine: &LxdEngine, max_unused: Duration) -> Result<Pruned> {
    let state = &engine.state_dir;
    let store = engine.store(OP)?;
    let mut pruned = Pruned {
        ran: true,
        ..Pruned::default()
    };
    pruned.bases = Bases::new(state).prune(&store, max_unused)?;
    let mut kept_layers = Vec::new();
    for entry in entries(&state.join("steps")) {
        if unused(&entry, max_unused) {
            pruned.step_entries += usize::from(fs::remove_file(&entry).is_ok());
        } else if let Ok(bytes) = fs::read(&entry) {
            let record: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            if let Some(digest) = record["descriptor"]["digest"].as_str() {
                kept_layers.push(digest.to_string());
            }
        }
    }
    berth_layer::memo::prune(&state.join(berth_layer::copy::DIGESTS_FOLDER), max_unused);
    let reachable = store.reachable(kept_layers, OP)?;
    (pruned.blobs, pruned.blob_bytes) = store.sweep(&reachable, OP)?;
    // the import records name images of the local server: a remote one's images are not this folder's
    if engine.remote().is_none() {
        pruned.lxd_images = lxd_images(engine, &reachable, max_unused).await?;
    }
    for helper in entries(&state.join("helpers")) {
        let name = helper.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let digest = format!("sha256:{name}");
        if !reachable.contains(&digest) || unused(&helper.join("complete"), max_unused) {
            pruned.helper_roots += usize::from(fs::remove_dir_all(&helper).is_ok());
        }
    }
    for dir in [state.join("oci/tmp"), state.join("steps")] {
        for left in entries(&dir) {
            if left_by_dead_process(&left) {
                let _ = crate::base::remove_any(&left);
            }
        }
    }
    Ok(pruned)
}

/// Whether `path` is a temporary file named with a berth process (`<what>.berth-<pid>-...`) that is gone.
fn left_by_dead_process(path: &Path) -> bool {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    name.find(&format!(".{}", crate::NAME_PREFIX))
        .and_then(|at| crate::instance::pid_of(&name[at + 1..]))
        .is_some_and(|pid| !Path::new(&format!("/proc/{pid}")).exists())
}

/// Deletes the LXD images this state folder imported whose manifest is not in `reachable` or that went unused.
async fn lxd_images(
    engine: &LxdEngine,
    reachable: &HashSet<String>,
    max_unused: Duration,
) -> Result<Vec<String>> {
    let images = engine
        .lxd
        .call(OP, Method::GET, "/1.0/images?recursion=1", None)
        .await?;
    let mut deleted = Vec::new();
    for image in images.as_array().into_iter().flatten() {
        let fingerprint = image["fingerprint"].as_str().unwrap_or_default();
        let aliases = image["aliases"].as_array().into_iter().flatten();
        for alias in aliases.filter_map(|a| a["name"].as_str()) {
            let Some(hex) = alias.strip_prefix(crate::base::ALIAS_PREFIX) else {
                continue;
            };
            let record = crate::base::import_record(&engine.state_dir, alias);
            if !record.exists() {
                continue; // imported through another state folder, whose builds may use it
            }
            if reachable.contains(&format!("sha256:{hex}")) && !unused(&record, max_unused) {
                continue;
            }
            let path = format!("/1.0/images/{fingerprint}");
            match engine.lxd.call(OP, Method::DELETE, &path, None).await {
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
            let _ = fs::remove_file(&record);
            let _ = fs::remove_file(engine.state_dir.join(format!("{alias}.lock")));
            deleted.push(alias.to_string());
        }
    }
    Ok(deleted)
}

/// The images builds pulled (bases and helpers), by name, with when a build last used each: a record per name
/// in `bases/` (the manifest digest it was pulled at; modified at each use).
pub(crate) struct Bases {
    dir: PathBuf,
}

impl Bases {
    pub(crate) fn new(state_dir: &Path) -> Bases {
        Bases {
            dir: state_dir.join("bases"),
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir
            .join(berth_layer::oci::sha256(name.as_bytes()).trim_start_matches("sha256:"))
    }

    /// A build used image `name` at `digest`; `pulled`: the build pulled it (else only a known record is marked
    /// used: a name the user made stays the user's).
    pub(crate) fn used(&self, name: &str, digest: &str, pulled: bool) {
        let path = self.path(name);
        if pulled {
            let _ = fs::create_dir_all(&self.dir);
            let _ = fs::write(&path, json!({"name": name, "digest": digest}).to_string());
        } else {
            touch(&path);
        }
    }

    /// The user pulled `name`: it is theirs now.
    pub(crate) fn forget(&self, name: &str) {
        let _ = fs::remove_file(self.path(name));
    }

    /// Removes the names of images builds pulled and have not used for longer than `max_unused` (when the name
    /// still points where the build pulled it); returns them.
    fn prune(&self, store: &Store, max_unused: Duration) -> Result<Vec<String>> {
        let mut removed = Vec::new();
        for record in entries(&self.dir) {
            if !unused(&record, max_unused) {
                continue;
            }
            let entry: Value = fs::read(&record)
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok())
                .unwrap_or_default();
            if let (Some(name), Some(digest)) = (entry["name"].as_str(), entry["digest"].as_str()) {
                let current = store.resolve(name, OP)?;
                if current.is_some_and(|d| d["digest"] == digest) && store.remove_ref(name, OP)? {
                    removed.push(name.to_string());
                }
            }
            let _ = fs::remove_file(&record);
        }
        Ok(removed)
    }
}

impl Store {
    /// The manifest digests, configs and layers reachable from the store's names, and `layers`.
    pub(crate) fn reachable(&self, layers: Vec<String>, op: Operation) -> Result<HashSet<String>> {
        let mut seen: HashSet<String> = layers.into_iter().collect();
        let mut pending: Vec<String> = self
            .names(op)?
            .into_iter()
            .map(|(_, digest)| digest)
            .collect();
        while let Some(digest) = pending.pop() {
            if !valid_digest(&digest) || !seen.insert(digest.clone()) {
                continue;
            }
            // a manifest or an index: what it names is reachable too (a missing blob names nothing)
            let Ok(bytes) = fs::read(self.blob_path(&digest, op)?) else {
                continue;
            };
            let Ok(doc) = serde_json::from_slice::<Value>(&bytes) else {
                continue;
            };
            if let Some(config) = doc["config"]["digest"].as_str() {
                seen.insert(config.to_string());
            }
            for layer in doc["layers"].as_array().into_iter().flatten() {
                if let Some(d) = layer["digest"].as_str() {
                    seen.insert(d.to_string());
                }
            }
            for child in doc["manifests"].as_array().into_iter().flatten() {
                if let Some(d) = child["digest"].as_str() {
                    pending.push(d.to_string());
                }
            }
        }
        Ok(seen)
    }
}
