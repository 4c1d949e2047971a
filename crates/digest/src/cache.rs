//! A persistent digest cache keyed like git's index.
//!
//! The key of a digest is the sha256 of its kind and, for every file it
//! covers in hashing order, the bytes hashed as its name, its path, size,
//! mtime and ctime (with nanoseconds), inode and device. A file rewritten in
//! place changes its ctime even when size and mtime are restored, so an
//! unchanged key means unchanged contents. Each entry is one small file,
//! `<dir>/<key>`, holding `berth-digest-v1 <kind> <digest>`; it is written to
//! a temporary file and renamed into place, and anything unreadable or
//! malformed is treated as a miss. Cache trouble never fails a digest.
//!
//! Besides whole digests, the cache keeps *checkpoints*: the md5 state
//! after some file of the stream, keyed by the same kind of key over the
//! files up to it, in one file per stream (`<dir>/ckpt-<id>`, id = sha256 of
//! kind and root). When a tree changed, hashing resumes from the last
//! checkpoint whose files are all unchanged, so only the files from the
//! first change on (in digest order) are read again.
//!
//! Racy-git rule: if any covered file was modified less than
//! [`RACY_WINDOW`] before the listing started, the entry is neither read nor
//! written. Otherwise a file changed in the same timestamp tick as it was
//! hashed could keep its stat data and be missed.

use std::io::Write;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};

use crate::hash::hex;

/// Files modified this recently (relative to the listing) make a digest
/// uncacheable. Two seconds also covers filesystems with 2 s mtimes.
pub const RACY_WINDOW: Duration = Duration::from_secs(2);

/// Where digests are remembered between runs.
///
/// Open one with [`DigestCache::open`] (the CLI opens `digests` in its one cache folder,
/// `BERTH_CACHE_DIR` or the XDG default) or use [`DigestCache::disabled`]. Sharing
/// one directory between processes is safe: writes are atomic renames.
#[derive(Debug)]
pub struct DigestCache {
    dir: Option<PathBuf>,
}

impl DigestCache {
    /// A cache stored in `dir` (created on first write).
    pub fn open(dir: &Path) -> Self {
        DigestCache {
            dir: Some(dir.to_path_buf()),
        }
    }

    /// A cache that never remembers anything.
    pub fn disabled() -> Self {
        DigestCache { dir: None }
    }

    /// The directory entries live in, if enabled.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The stored digest for `key`, if any and well-formed.
    pub(crate) fn lookup(&self, key: &Key) -> Option<String> {
        let (dir, hex_key) = (self.dir.as_ref()?, key.hex.as_ref()?);
        let text = std::fs::read_to_string(dir.join(hex_key)).ok()?;
        let mut fields = text.trim_end_matches('\n').split(' ');
        let ok = fields.next() == Some("berth-digest-v1") && fields.next() == Some(key.kind);
        let digest = fields.next()?;
        let well_formed = digest.len() == key.digest_len
            && digest
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        (ok && well_formed && fields.next().is_none()).then(|| digest.to_owned())
    }

    /// Remembers `digest` for `key` (ignoring any failure).
    pub(crate) fn store(&self, key: &Key, digest: &str) {
        let (Some(dir), Some(hex_key)) = (self.dir.as_ref(), key.hex.as_ref()) else {
            return;
        };
        let _ = write_atomically(
            dir,
            hex_key,
            &format!("berth-digest-v1 {} {digest}\n", key.kind),
        );
    }
}

/// One saved md5 state in the middle of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Checkpoint {
    /// The state is the one right after this file (index in digest order).
    pub(crate) index: usize,
    /// Key over the files `0..=index` (see [`KeyBuilder::snapshot`]).
    pub(crate) prefix_key: String,
    /// [`Md5::encode`](crate::fastmd5::Md5::encode) of the state.
    pub(crate) state: String,
}

impl DigestCache {
    /// The checkpoints stored for stream `id` (empty when none or broken).
    pub(crate) fn load_checkpoints(&self, id: &str) -> Vec<Checkpoint> {
        let Some(dir) = self.dir.as_ref() else {
            return Vec::new();
        };
        let Ok(text) = std::fs::read_to_string(dir.join(format!("ckpt-{id}"))) else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|line| {
                let mut f = line.split(' ');
                if f.next() != Some("berth-ckpt-v1") {
                    return None;
                }
                let index = f.next()?.parse().ok()?;
                let prefix_key = f.next()?.to_owned();
                let state = f.next()?.to_owned();
                f.next().is_none().then_some(Checkpoint {
                    index,
                    prefix_key,
                    state,
                })
            })
            .collect()
    }

    /// Replaces the checkpoints of stream `id` (ignoring any failure).
    pub(crate) fn store_checkpoints(&self, id: &str, checkpoints: &[Checkpoint]) {
        let Some(dir) = self.dir.as_ref() else {
            return;
        };
        let text: String = checkpoints
            .iter()
            .map(|c| format!("berth-ckpt-v1 {} {} {}\n", c.index, c.prefix_key, c.state))
            .collect();
        let _ = write_atomically(dir, &format!("ckpt-{id}"), &text);
    }
}

/// Names the checkpoint file of a stream: its kind and what it is made of
/// (the source root, or the copy entries).
pub(crate) fn stream_id(kind: &str, identity: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"berth-digest-stream-v1\0");
    h.update(kind.as_bytes());
    h.update([0]);
    h.update(identity);
    hex(&h.finalize())
}

/// Writes `text` to `dir/name` through a temporary file renamed into place (creating `dir`), so a reader sees
/// the old record or the whole new one.
pub fn write_atomically(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    std::fs::create_dir_all(dir)?;
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let tmp = dir.join(format!(
        ".tmp-{}-{nanos}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    let result = (|| {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(text.as_bytes())?;
        file.sync_all()?;
        std::fs::rename(&tmp, dir.join(name))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// What identifies a file's content without reading it: size, mtime and
/// ctime (seconds, nanoseconds), inode, device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp([u64; 7]);

impl Stamp {
    /// The stamp of `meta` (a `stat` result).
    pub fn of(meta: &std::fs::Metadata) -> Stamp {
        Stamp([
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
            meta.ino(),
            meta.dev(),
        ])
    }

    /// The modification time.
    fn modified(&self) -> SystemTime {
        time(self.0[1], self.0[2])
    }

    /// The later of the modification and the change time: when the file last changed, as far as its stat says.
    pub fn changed(&self) -> SystemTime {
        self.modified().max(time(self.0[3], self.0[4]))
    }

    /// The stamp as text: seven numbers separated by spaces ([`Stamp::parse`] reads it back).
    pub fn to_text(&self) -> String {
        self.0.map(|n| n.to_string()).join(" ")
    }

    /// A stamp [`Stamp::to_text`] wrote, or `None`.
    pub fn parse(text: &str) -> Option<Stamp> {
        let mut numbers = text.split(' ').map(|n| n.parse::<u64>().ok());
        let mut stamp = [0u64; 7];
        for n in &mut stamp {
            *n = numbers.next()??;
        }
        numbers.next().is_none().then_some(Stamp(stamp))
    }
}

/// A time from the seconds and nanoseconds `stat` gives (as stored: signed seconds in a `u64`).
fn time(secs: u64, nanos: u64) -> SystemTime {
    let secs = secs as i64;
    if secs >= 0 {
        UNIX_EPOCH + Duration::new(secs as u64, nanos as u32)
    } else {
        UNIX_EPOCH
    }
}

/// A cache key under construction / finished.
#[derive(Debug)]
pub(crate) struct Key {
    kind: &'static str,
    digest_len: usize,
    /// `None` when the entry must not be trusted (racy files).
    hex: Option<String>,
}

/// Builds a [`Key`] from the files a digest covers.
pub(crate) struct KeyBuilder {
    kind: &'static str,
    digest_len: usize,
    hasher: Sha256,
    racy_after: SystemTime,
    racy: bool,
}

impl KeyBuilder {
    /// Starts a key for a digest of `kind` (hex length `digest_len`) over a
    /// listing that began at `listed_at`.
    pub(crate) fn new(kind: &'static str, digest_len: usize, listed_at: SystemTime) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(b"berth-digest-key-v1\0");
        hasher.update(kind.as_bytes());
        hasher.update([0]);
        KeyBuilder {
            kind,
            digest_len,
            hasher,
            racy_after: listed_at.checked_sub(RACY_WINDOW).unwrap_or(UNIX_EPOCH),
            racy: false,
        }
    }

    /// Adds one covered file.
    pub(crate) fn file(&mut self, name: &[u8], path: &Path, stamp: &Stamp) {
        let path = path.as_os_str().as_bytes();
        for part in [name, path] {
            self.hasher.update((part.len() as u64).to_le_bytes());
            self.hasher.update(part);
        }
        for n in stamp.0 {
            self.hasher.update(n.to_le_bytes());
        }
        if stamp.modified() >= self.racy_after {
            self.racy = true;
        }
    }

    /// The key over the files added so far, or `None` if one of them is
    /// racy (then nothing derived from them may be stored).
    pub(crate) fn snapshot(&self) -> Option<String> {
        (!self.racy).then(|| hex(&self.hasher.clone().finalize()))
    }

    /// The finished key.
    pub(crate) fn finish(self) -> Key {
        let digest = self.hasher.finalize();
        Key {
            kind: self.kind,
            digest_len: self.digest_len,
            hex: (!self.racy).then(|| hex(&digest)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(dir: &Path, listed_at: SystemTime) -> Key {
        let path = dir.join("f");
        let meta = std::fs::metadata(&path).unwrap_or_else(|e| panic!("{e}"));
        let mut kb = KeyBuilder::new("test", 4, listed_at);
        kb.file(b"f", &path, &Stamp::of(&meta));
        kb.finish()
    }

    #[test]
    fn fresh_files_are_racy_old_ones_are_not() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("f"), b"x").unwrap_or_else(|e| panic!("{e}"));
        assert!(key_for(dir.path(), SystemTime::now()).hex.is_none());
        let later = SystemTime::now() + Duration::from_secs(60);
        assert!(key_for(dir.path(), later).hex.is_some());
    }

    #[test]
    fn checkpoints_round_trip_and_skip_garbage_lines() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let cache = DigestCache::open(dir.path());
        let cps = vec![
            Checkpoint {
                index: 3,
                prefix_key: "ab".to_owned(),
                state: "00".to_owned(),
            },
            Checkpoint {
                index: 9,
                prefix_key: "cd".to_owned(),
                state: "11".to_owned(),
            },
        ];
        cache.store_checkpoints("s", &cps);
        assert_eq!(cache.load_checkpoints("s"), cps);
        let path = dir.path().join("ckpt-s");
        std::fs::write(&path, "junk\nberth-ckpt-v1 x y z\nberth-ckpt-v1 1 k s\n")
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cache.load_checkpoints("s").len(), 1);
        assert!(DigestCache::disabled().load_checkpoints("s").is_empty());
    }

    #[test]
    fn store_then_lookup_and_reject_garbage() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("f"), b"x").unwrap_or_else(|e| panic!("{e}"));
        let cache = DigestCache::open(&dir.path().join("cache"));
        let key = key_for(dir.path(), SystemTime::now() + Duration::from_secs(60));
        assert_eq!(cache.lookup(&key), None);
        cache.store(&key, "ab12");
        assert_eq!(cache.lookup(&key).as_deref(), Some("ab12"));
        let entry = dir
            .path()
            .join("cache")
            .join(key.hex.clone().unwrap_or_default());
        for garbage in [
            "",
            "berth-digest-v1 test AB12\n",
            "berth-digest-v1 other ab12\n",
            "x",
        ] {
            std::fs::write(&entry, garbage).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(cache.lookup(&key), None, "{garbage:?}");
        }
        assert_eq!(DigestCache::disabled().lookup(&key), None);
    }
}
