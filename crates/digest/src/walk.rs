//! Directory walks that visit what Python's `os.walk` visits.
//!
//! Shared rules (`os.walk(top)` without `followlinks`, plus flytekit's
//! per-file checks):
//! * a symlink to a directory is listed as a directory but never entered,
//!   so it contributes nothing;
//! * a file whose target does not exist (dangling or looping symlink, or
//!   any `stat` failure) is skipped, and so is a socket;
//! * a directory that cannot be listed is skipped silently (`os.walk`'s
//!   default `onerror=None`), except the top one, which is an error here.
//!
//! The source walk additionally prunes every directory named `.git`; the
//! order does not matter there because the caller sorts globally. The copy
//! walk keeps `os.walk`'s order: a directory's files sorted by name, then
//! its subdirectories in the order `read_dir` returns them (the same
//! `getdents` order `os.scandir` sees), each fully before the next.

use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{Condvar, Mutex};

use crate::DigestError;

/// One non-directory entry that exists and is not a socket.
#[derive(Debug)]
pub(crate) struct Found {
    /// Path relative to the walk's top, `/`-separated, as raw bytes.
    pub(crate) relative: Vec<u8>,
    /// The path as walked (top joined with `relative`).
    pub(crate) absolute: PathBuf,
    /// `stat` of the target (symlinks followed).
    pub(crate) meta: Metadata,
}

/// What kind of thing a directory entry turned out to be.
enum Kind {
    /// A real directory (to be entered).
    Dir,
    /// A symlink to a directory (listed as a directory, never entered).
    DirLink,
    /// An existing non-directory, non-socket target.
    File(Metadata),
    /// Skipped: target missing, `stat` failed, or a socket.
    Skip,
}

fn classify(entry: &fs::DirEntry) -> Kind {
    let Ok(file_type) = entry.file_type() else {
        return Kind::Skip;
    };
    if file_type.is_dir() {
        return Kind::Dir;
    }
    let meta = if file_type.is_symlink() {
        fs::metadata(entry.path())
    } else {
        entry.metadata()
    };
    match meta {
        Ok(m) if m.is_dir() => Kind::DirLink,
        Ok(m) if is_socket(&m) => Kind::Skip,
        Ok(m) => Kind::File(m),
        Err(_) => Kind::Skip,
    }
}

fn is_socket(meta: &Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    meta.file_type().is_socket()
}

/// Lists a directory; `None` when it cannot be read (or fails midway, in
/// which case `os.walk` also drops the whole directory).
fn read_dir(dir: &Path) -> Option<Vec<fs::DirEntry>> {
    fs::read_dir(dir).ok()?.collect::<Result<Vec<_>, _>>().ok()
}

fn join_rel(parent: &[u8], name: &OsStr) -> Vec<u8> {
    let mut rel = Vec::with_capacity(parent.len() + 1 + name.len());
    if !parent.is_empty() {
        rel.extend_from_slice(parent);
        rel.push(b'/');
    }
    rel.extend_from_slice(name.as_bytes());
    rel
}

/// Checks the top of a walk is a readable directory.
fn open_top(top: &Path) -> Result<Vec<fs::DirEntry>, DigestError> {
    let meta = fs::metadata(top).map_err(|e| DigestError::io(top, e))?;
    if !meta.is_dir() {
        return Err(DigestError::NotADirectory {
            path: top.to_path_buf(),
        });
    }
    fs::read_dir(top)
        .and_then(|rd| rd.collect::<Result<Vec<_>, _>>())
        .map_err(|e| DigestError::io(top, e))
}

/// Threads walking a source tree (`BERTH_DIGEST_WALK_THREADS`, default 4).
/// Listing is dominated by `stat` calls, which on a cold cache wait for the
/// disk, so a few threads help even on two cores.
fn walk_threads() -> usize {
    std::env::var("BERTH_DIGEST_WALK_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(4)
}

/// Directories waiting to be listed, and how many are being listed now.
struct Queue {
    dirs: Vec<(PathBuf, Vec<u8>)>,
    active: usize,
}

/// Every file under `top` as flytekit's `list_all_files` would see it
/// before ignore rules (unordered). Directories are listed by a few
/// threads in parallel.
pub(crate) fn walk_source(top: &Path) -> Result<Vec<Found>, DigestError> {
    open_top(top)?;
    let queue = Mutex::new(Queue {
        dirs: vec![(top.to_path_buf(), Vec::new())],
        active: 0,
    });
    let wakeup = Condvar::new();
    let (queue, wakeup) = (&queue, &wakeup);
    let mut found = Vec::new();
    std::thread::scope(|scope| {
        let workers: Vec<_> = (1..walk_threads())
            .filter_map(|_| {
                std::thread::Builder::new()
                    .name("berth-digest-walk".to_owned())
                    .spawn_scoped(scope, move || walk_worker(queue, wakeup))
                    .ok()
            })
            .collect();
        found = walk_worker(queue, wakeup);
        for worker in workers {
            found.extend(
                worker
                    .join()
                    .unwrap_or_else(|p| std::panic::resume_unwind(p)),
            );
        }
    });
    Ok(found)
}

fn lock(queue: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    queue
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Takes directories from the queue until none is left or being listed.
fn walk_worker(queue: &Mutex<Queue>, wakeup: &Condvar) -> Vec<Found> {
    let mut found = Vec::new();
    let mut subdirs = Vec::new();
    loop {
        let (dir, rel) = {
            let mut q = lock(queue);
            loop {
                if let Some(next) = q.dirs.pop() {
                    q.active += 1;
                    if !q.dirs.is_empty() {
                        wakeup.notify_one();
                    }
                    break next;
                }
                if q.active == 0 {
                    wakeup.notify_all();
                    return found;
                }
                q = wakeup
                    .wait(q)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        list_source_dir(&dir, &rel, &mut found, &mut subdirs);
        let mut q = lock(queue);
        q.active -= 1;
        q.dirs.append(&mut subdirs);
        // Wake waiters for new work, or so they can see the walk is over.
        if !q.dirs.is_empty() || q.active == 0 {
            wakeup.notify_all();
        }
    }
}

/// Lists one directory of a source walk: files into `found`, directories
/// to enter (not `.git`, not symlinks) into `subdirs`.
fn list_source_dir(
    dir: &Path,
    rel: &[u8],
    found: &mut Vec<Found>,
    subdirs: &mut Vec<(PathBuf, Vec<u8>)>,
) {
    let Some(entries) = read_dir(dir) else {
        return;
    };
    for entry in entries {
        let name = entry.file_name();
        match classify(&entry) {
            Kind::Dir if name.as_bytes() == b".git" => {}
            Kind::Dir => subdirs.push((dir.join(&name), join_rel(rel, &name))),
            Kind::DirLink | Kind::Skip => {}
            Kind::File(meta) => found.push(Found {
                relative: join_rel(rel, &name),
                absolute: dir.join(&name),
                meta,
            }),
        }
    }
}

/// The files of a directory in `compute_digest_for_dir` order (see the
/// module doc). `.git` is *not* pruned here, as in flytekit.
pub(crate) fn walk_copy_dir(top: &Path) -> Result<Vec<Found>, DigestError> {
    let mut found = Vec::new();
    // A stack of directories still to visit, the next one on top.
    let mut stack: Vec<(PathBuf, Vec<u8>, Vec<fs::DirEntry>)> =
        vec![(top.to_path_buf(), Vec::new(), open_top(top)?)];
    while let Some((dir, rel, entries)) = stack.pop() {
        let mut files = Vec::new();
        let mut subdirs = Vec::new();
        for entry in entries {
            let name = entry.file_name();
            match classify(&entry) {
                Kind::Dir => subdirs.push(name),
                Kind::DirLink | Kind::Skip => {}
                Kind::File(meta) => files.push((name, meta)),
            }
        }
        files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
        for (name, meta) in files {
            found.push(Found {
                relative: join_rel(&rel, &name),
                absolute: dir.join(&name),
                meta,
            });
        }
        for name in subdirs.into_iter().rev() {
            let path = dir.join(&name);
            if let Some(children) = read_dir(&path) {
                stack.push((path, join_rel(&rel, &name), children));
            }
        }
    }
    Ok(found)
}

/// A single path given as a copy entry that is not a directory, as
/// `compute_digest_for_file(src, os.path.basename(src))` sees it: `None`
/// when it does not exist or is a socket.
pub(crate) fn copy_single_file(path: &Path) -> Option<Found> {
    let meta = fs::metadata(path).ok()?;
    if is_socket(&meta) {
        return None;
    }
    let bytes = path.as_os_str().as_bytes();
    let base = match bytes.iter().rposition(|&b| b == b'/') {
        Some(i) => &bytes[i + 1..],
        None => bytes,
    };
    Some(Found {
        relative: base.to_vec(),
        absolute: path.to_path_buf(),
        meta,
    })
}
