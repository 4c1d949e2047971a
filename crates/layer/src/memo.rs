//! The contents' digests of a COPY step's sources, remembered by file identity between builds.
//!
//! A COPY's step-cache key holds the sha256 of every file it copies, so a build whose COPY steps are all cached
//! still read and hashed every byte of them (a 1 GiB tree: most of such a build's time). The digests are kept per
//! source set (the step's sources and targets; `<folder>/<key>`), one line per file with what identifies its
//! contents without reading them, berth's naming cache's [`Stamp`] (as git's index: inode, device, size, mtime
//! and ctime with nanoseconds). A file written in place changes its ctime, so an unchanged line means unchanged bytes.
//! A file changed less than [`RACY_WINDOW`] before the build is read again (a change in the same timestamp tick
//! as the hashing could keep its stat data), and so is any file whose line differs. The layer check still hashes
//! every byte written against these digests, so a wrong record fails a step that writes its layer; a cached step
//! trusts them as it trusts the naming cache.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub use berth_digest::{write_atomically, Stamp, RACY_WINDOW};
use sha2::{Digest as _, Sha256};

const FORMAT: &str = "berth-copy-digests-v2";

/// Whether the file of `stamp` changed within [`RACY_WINDOW`] of `now` (or claims a time after it).
fn racy(stamp: &Stamp, now: SystemTime) -> bool {
    stamp.changed() + RACY_WINDOW > now
}

/// A record line: the stamp, then the digest (hex).
fn parse(line: &str) -> Option<(Stamp, String)> {
    let (stamp, digest) = line.rsplit_once(' ')?;
    let hex = digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit());
    Some((Stamp::parse(stamp)?, digest.to_string())).filter(|_| hex)
}

/// Marks the record at `path` used (for [`prune`]).
pub fn touch(path: &Path) {
    if let Ok(file) = std::fs::File::options().append(true).open(path) {
        let _ = file.set_modified(SystemTime::now());
    }
}

/// The remembered digests of one source set: read with [`Memo::load`], asked per file with [`Memo::digest`],
/// then written back with [`Memo::save`].
#[derive(Debug)]
pub struct Memo {
    path: Option<PathBuf>,
    known: Vec<Option<(Stamp, String)>>,
    now: SystemTime,
}

impl Memo {
    /// The record of the source set named by `names` (each file's source and target, in order) in `folder`;
    /// `None` for a memo that remembers nothing.
    pub fn load(folder: Option<&Path>, names: &[(&str, &str)]) -> Memo {
        let path = folder.map(|folder| {
            let mut hasher = Sha256::new();
            hasher.update(FORMAT);
            for (source, target) in names {
                hasher.update(format!("\n{source}\0{target}"));
            }
            folder.join(crate::file::hex(hasher))
        });
        let text = path
            .as_deref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .unwrap_or_default();
        let mut lines = text.lines();
        let known = if lines.next() == Some(FORMAT) {
            let known: Vec<_> = lines.map(parse).collect();
            if known.len() == names.len() {
                known
            } else {
                Vec::new()
            }
        } else {
            Vec::new()
        };
        Memo {
            path,
            known,
            now: SystemTime::now(),
        }
    }

    /// The remembered digest of file `index` of the set, if its identity is still `identity` and it did not
    /// change just now.
    pub fn digest(&self, index: usize, identity: &Stamp) -> Option<&str> {
        match self.known.get(index) {
            Some(Some((known, digest))) if known == identity && !racy(identity, self.now) => {
                Some(digest)
            }
            _ => None,
        }
    }

    /// Marks the record used (for [`prune`]) when it held every file already.
    pub fn touch(&self) {
        if let Some(path) = &self.path {
            touch(path);
        }
    }

    /// Records the set's files (identity and digest each, in order; `None` for one that has no identity, such
    /// as bytes berth generated, or that changed just now). Best effort: a record that cannot be written costs
    /// only time.
    pub fn save(&self, files: &[Option<(Stamp, &str)>]) {
        let Some(path) = &self.path else {
            return;
        };
        let mut text = format!("{FORMAT}\n");
        for file in files {
            match file {
                Some((stamp, digest)) if !racy(stamp, self.now) => {
                    text.push_str(&format!("{} {digest}\n", stamp.to_text()))
                }
                _ => text.push_str("-\n"),
            }
        }
        if let (Some(folder), Some(name)) = (path.parent(), path.file_name()) {
            let _ = write_atomically(folder, &name.to_string_lossy(), &text);
        }
    }
}

/// Drops the records (files) of `folder` not used (modified or touched) for `max_unused`.
pub fn prune(folder: &Path, max_unused: Duration) {
    let Ok(entries) = std::fs::read_dir(folder) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        let used = entry.metadata().and_then(|m| m.modified()).unwrap_or(now);
        if now.duration_since(used).unwrap_or_default() > max_unused {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(path: &Path) -> Stamp {
        Stamp::of(&std::fs::metadata(path).expect("metadata"))
    }

    /// The one record in `folder`.
    fn only_record(folder: &Path) -> PathBuf {
        let mut entries = std::fs::read_dir(folder).expect("the memo folder");
        entries.next().expect("a record").expect("entry").path()
    }

    /// The record of `names`, as a build would see it a minute from now (so the files just written are not
    /// racy: their ctime cannot be set back).
    fn later(folder: &Path, names: &[(&str, &str)]) -> Memo {
        let mut memo = Memo::load(Some(folder), names);
        memo.now += Duration::from_secs(60);
        memo
    }

    #[test]
    fn a_file_is_recalled_until_it_changes() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "one").expect("write");
        let names = [("a.txt", "/app/a.txt")];
        let folder = dir.path().join("memo");
        let memo = later(&folder, &names);
        assert_eq!(
            memo.digest(0, &identity(&file)),
            None,
            "nothing recorded yet"
        );
        memo.save(&[Some((identity(&file), &"ab".repeat(32)))]);
        let memo = later(&folder, &names);
        assert_eq!(
            memo.digest(0, &identity(&file)),
            Some("ab".repeat(32).as_str())
        );
        // another set of names has its own record
        let other = later(&folder, &[("a.txt", "/other")]);
        assert_eq!(other.digest(0, &identity(&file)), None);
        // written again (same size): its ctime moved, so it is read again
        std::thread::sleep(Duration::from_millis(20));
        std::fs::write(&file, "two").expect("write");
        assert_eq!(memo.digest(0, &identity(&file)), None);
        // and a build right now does not trust even the same identity
        assert_eq!(
            Memo::load(Some(&folder), &names).digest(0, &identity(&file)),
            None
        );
    }

    #[test]
    fn a_file_changed_just_now_is_neither_recalled_nor_recorded() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "fresh").expect("write");
        let names = [("a.txt", "/a.txt")];
        let folder = dir.path().join("memo");
        let memo = Memo::load(Some(&folder), &names);
        memo.save(&[Some((identity(&file), &"cd".repeat(32)))]);
        let text = std::fs::read_to_string(only_record(&folder)).expect("record");
        assert!(text.ends_with("-\n"), "a racy file is not recorded: {text}");
    }

    #[test]
    fn a_damaged_record_is_ignored() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("a.txt");
        std::fs::write(&file, "one").expect("write");
        let names = [("a.txt", "/a.txt")];
        let folder = dir.path().join("memo");
        later(&folder, &names).save(&[Some((identity(&file), &"ef".repeat(32)))]);
        let record = only_record(&folder);
        let text = std::fs::read_to_string(&record).expect("record");
        std::fs::write(&record, text.replace(&"ef".repeat(32), "not-a-digest")).expect("damage");
        assert_eq!(later(&folder, &names).digest(0, &identity(&file)), None);
    }

    #[test]
    fn unused_records_are_pruned_and_used_ones_kept() {
        let dir = tempfile::tempdir().expect("temp dir");
        std::fs::write(dir.path().join("old"), "x").expect("write");
        std::thread::sleep(Duration::from_millis(30));
        std::fs::write(dir.path().join("new"), "x").expect("write");
        prune(dir.path(), Duration::from_millis(20));
        assert!(!dir.path().join("old").exists());
        assert!(dir.path().join("new").exists());
    }
}
