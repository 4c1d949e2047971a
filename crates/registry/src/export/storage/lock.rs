//! containers/storage's lock files, taken for reading as its own readers take them: a POSIX record lock
//! (`fcntl(F_SETLKW)`, `F_RDLCK`) over the whole file. Writers (a build committing a layer, `podman rmi`) wait
//! while berth reads, and berth waits while one writes.

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::Path;

/// A read lock, held until dropped (closing the file releases it).
pub(crate) struct ReadLock {
    _file: File,
}

impl ReadLock {
    /// Takes the read lock of `path`, waiting while a writer holds it.
    pub(crate) fn take(path: &Path) -> std::io::Result<ReadLock> {
        let file = File::open(path)?;
        let lock = nix::libc::flock {
            l_type: nix::libc::F_RDLCK as i16,
            l_whence: nix::libc::SEEK_SET as i16,
            l_start: 0,
            l_len: 0,
            l_pid: 0,
        };
        loop {
            match nix::fcntl::fcntl(file.as_raw_fd(), nix::fcntl::FcntlArg::F_SETLKW(&lock)) {
                Ok(_) => return Ok(ReadLock { _file: file }),
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return Err(std::io::Error::from(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn takes_a_shared_lock_others_may_share() {
        let dir = tempfile::tempdir().expect("test setup");
        let path = dir.path().join("layers.lock");
        std::fs::write(&path, b"").expect("test setup");
        let first = ReadLock::take(&path).expect("test setup");
        let second = ReadLock::take(&path).expect("test setup");
        drop((first, second));
        assert!(ReadLock::take(&dir.path().join("missing.lock")).is_err());
    }
}
