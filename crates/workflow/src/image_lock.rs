//! One build of an image at a time on this machine: two berth processes asked for the same missing image (two CI
//! jobs, two terminals, a project build beside a single one) would both build it and push it, and with engines
//! whose builds are not reproducible the tag would end on whichever pushed last while the other printed a digest
//! the tag no longer names. The first takes an exclusive `flock` on a file named after the image (in berth's
//! cache folder); the second waits for it, then asks the registry again and finds the image there. The kernel
//! drops the lock when its holder exits, killed or not, so a crashed berth never blocks the next one.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;

use berth_core::{Error, ErrorKind, Result};
use md5::{Digest, Md5};
use nix::fcntl::{Flock, FlockArg};

/// A held lock on one image name; released when dropped.
pub struct ImageLock {
    _lock: Flock<File>,
}

/// Whether the lock was free or another berth held it first.
pub enum Taken {
    /// Nobody held it.
    Free(ImageLock),
    /// Another berth held it until now: it may have pushed the image meanwhile.
    AfterWaiting(ImageLock),
}

/// The lock file for `image` under `dir`.
fn lock_path(dir: &std::path::Path, image: &str) -> PathBuf {
    let hash = Md5::digest(image.as_bytes());
    let hex: String = hash.iter().map(|b| format!("{b:02x}")).collect();
    dir.join("locks").join(format!("{hex}.lock"))
}

/// Takes the lock on `image` in `dir`, calling `waiting` once if another process holds it, then waiting for it
/// (on a blocking thread, so other images go on).
pub async fn take(dir: PathBuf, image: &str, waiting: impl FnOnce()) -> Result<Taken> {
    let path = lock_path(&dir, image);
    let io =
        |e: std::io::Error| Error::io(&path, e).context("locking the image name for this build");
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(io)?;
    let file = match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => return Ok(Taken::Free(ImageLock { _lock: lock })),
        Err((file, nix::errno::Errno::EWOULDBLOCK)) => file,
        Err((_, errno)) => return Err(io(std::io::Error::from(errno))),
    };
    waiting();
    let blocked = tokio::task::spawn_blocking(move || Flock::lock(file, FlockArg::LockExclusive));
    match blocked.await {
        Ok(Ok(lock)) => Ok(Taken::AfterWaiting(ImageLock { _lock: lock })),
        Ok(Err((_, errno))) => Err(io(std::io::Error::from(errno))),
        Err(e) => Err(Error::new(
            ErrorKind::Io,
            format!("waiting for another berth's build of {image}: {e}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_second_taker_waits_for_the_first() {
        let dir = tempfile::tempdir().expect("temp dir");
        let first = take(dir.path().to_path_buf(), "reg/a:1", || {
            panic!("nobody holds it")
        })
        .await
        .expect("lock");
        assert!(matches!(first, Taken::Free(_)));
        let other = take(dir.path().to_path_buf(), "reg/b:1", || {
            panic!("another image")
        })
        .await
        .expect("lock");
        assert!(matches!(other, Taken::Free(_)));
        let (told, told_rx) = std::sync::mpsc::channel();
        let second = tokio::spawn({
            let dir = dir.path().to_path_buf();
            async move {
                take(dir, "reg/a:1", move || told.send(()).expect("send"))
                    .await
                    .expect("lock")
            }
        });
        told_rx
            .recv_timeout(std::time::Duration::from_secs(30))
            .expect("the second taker is told to wait");
        drop(first);
        let second = second.await.expect("task");
        assert!(matches!(second, Taken::AfterWaiting(_)));
    }
}
