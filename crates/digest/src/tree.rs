//! The public listing and digest entry points.

use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use crate::cache::{DigestCache, Stamp};
use crate::hash::Mode;
use crate::ignore::{IgnoreGroup, PendingGit};
use crate::stream::{digest_files, Outcome};
use crate::walk::{copy_single_file, walk_copy_dir, walk_source, Found};
use crate::DigestError;

/// One file that takes part in a digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// Path relative to the source root (or, for [`copy_files`], to the
    /// copy entry's destination), `/`-separated.
    pub relative: String,
    /// Where to read it (symlinks not resolved).
    pub absolute: PathBuf,
    /// Size in bytes when listed (symlinks followed).
    pub size: u64,
}

/// The files flytekit's ALL copy mode takes from a source root, in
/// flytekit's order. Made by [`list_source_files`].
#[derive(Debug)]
pub struct SourceTree {
    root: PathBuf,
    files: Vec<SourceFile>,
    stamps: Vec<Stamp>,
    listed_at: SystemTime,
}

/// Lists the files flytekit's ALL copy mode would take from `root`
/// (absolute), applying `.gitignore` (via git), `.dockerignore` and the
/// standard ignores; sorted as flytekit sorts. See the crate docs for the
/// exact rules.
pub fn list_source_files(root: &Path) -> Result<SourceTree, DigestError> {
    let listed_at = SystemTime::now();
    let git = PendingGit::spawn(root);
    let found = walk_source(root)?;
    let ignores = IgnoreGroup::new(root, git.wait())?;
    let mut kept: Vec<(SourceFile, Stamp)> = Vec::with_capacity(found.len());
    for f in found {
        let (relative, utf8) = match String::from_utf8(f.relative) {
            Ok(s) => (s, true),
            Err(e) => (String::from_utf8_lossy(e.as_bytes()).into_owned(), false),
        };
        if ignores.is_ignored(&relative)? {
            continue;
        }
        kept.push((
            checked(f.absolute, relative, utf8, &f.meta)?,
            Stamp::of(&f.meta),
        ));
    }
    // Python sorts the absolute path strings; they share the root prefix, and
    // UTF-8 byte order is code point order.
    kept.sort_unstable_by(|a, b| a.0.relative.cmp(&b.0.relative));
    let (files, stamps) = kept.into_iter().unzip();
    Ok(SourceTree {
        root: root.to_path_buf(),
        files,
        stamps,
        listed_at,
    })
}

/// The given files of `root` (absolute paths under it) as a tree, for flytekit's LOADED_MODULES copy mode: the
/// Python process that imported the modules lists them (`ls_files`), berth hashes and copies exactly those. Sorted
/// as flytekit sorts them (by path string); symlinks are followed, as Python's `open` and `shutil.copy` do. A file
/// listed twice stays twice (it is hashed twice, as flytekit does).
pub fn list_given_files(root: &Path, paths: &[PathBuf]) -> Result<SourceTree, DigestError> {
    let listed_at = SystemTime::now();
    let mut sorted: Vec<&PathBuf> = paths.iter().collect();
    // A module imported under two names is listed twice and flytekit hashes it twice; keep the repeats.
    sorted.sort_by(|a, b| a.as_os_str().as_bytes().cmp(b.as_os_str().as_bytes()));
    let mut files = Vec::with_capacity(sorted.len());
    let mut stamps = Vec::with_capacity(sorted.len());
    for path in sorted {
        let relative = path
            .strip_prefix(root)
            .ok()
            .filter(|r| !r.as_os_str().is_empty())
            .ok_or_else(|| DigestError::OutsideRoot {
                path: path.clone(),
                root: root.to_path_buf(),
            })?;
        let meta = std::fs::metadata(path).map_err(|e| DigestError::io(path, e))?;
        let (relative, utf8) = match relative.to_str() {
            Some(s) => (s.to_string(), true),
            None => (String::new(), false),
        };
        files.push(checked(path.clone(), relative, utf8, &meta)?);
        stamps.push(Stamp::of(&meta));
    }
    Ok(SourceTree {
        root: root.to_path_buf(),
        files,
        stamps,
        listed_at,
    })
}

/// Refuses what flytekit could not hash: non-UTF-8 names and special files.
fn checked(
    absolute: PathBuf,
    relative: String,
    utf8: bool,
    meta: &Metadata,
) -> Result<SourceFile, DigestError> {
    if !utf8 {
        return Err(DigestError::NonUtf8Path { path: absolute });
    }
    if !meta.is_file() {
        return Err(DigestError::SpecialFile { path: absolute });
    }
    Ok(SourceFile {
        relative,
        absolute,
        size: meta.len(),
    })
}

impl SourceTree {
    /// The root the tree was listed from.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The files, in digest order.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// md5 hex digest as flytekit's `ls_files` returns it; looked up in and
    /// stored to `cache` when given.
    pub fn digest(&self, cache: Option<&DigestCache>) -> Result<String, DigestError> {
        self.digest_with(cache, Mode::auto()).map(|o| o.digest)
    }

    pub(crate) fn digest_with(
        &self,
        cache: Option<&DigestCache>,
        mode: Mode,
    ) -> Result<Outcome, DigestError> {
        digest_files(
            "source-v1",
            self.root.as_os_str().as_bytes(),
            &self.files,
            &self.stamps,
            self.listed_at,
            cache,
            mode,
        )
    }
}

/// What one copy entry turned out to be.
enum CopyEntry {
    /// Does not exist (or its directory cannot be listed).
    Missing(DigestError),
    /// The files it contributes, in order.
    Files(Vec<Found>),
}

fn list_copy_entry(path: &Path) -> CopyEntry {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    if std::fs::metadata(path).is_ok_and(|m| m.is_dir()) {
        return match walk_copy_dir(&absolute) {
            Ok(found) => CopyEntry::Files(found),
            Err(e) => CopyEntry::Missing(e),
        };
    }
    match copy_single_file(path) {
        Some(mut found) => {
            found.absolute = absolute;
            CopyEntry::Files(vec![found])
        }
        None => CopyEntry::Missing(DigestError::MissingCopyEntry {
            path: path.to_path_buf(),
        }),
    }
}

fn to_source_files(found: Vec<Found>) -> Result<(Vec<SourceFile>, Vec<Stamp>), DigestError> {
    let mut files = Vec::with_capacity(found.len());
    let mut stamps = Vec::with_capacity(found.len());
    for f in found {
        let (relative, utf8) = match String::from_utf8(f.relative) {
            Ok(s) => (s, true),
            Err(_) => (String::new(), false),
        };
        files.push(checked(f.absolute, relative, utf8, &f.meta)?);
        stamps.push(Stamp::of(&f.meta));
    }
    Ok((files, stamps))
}

/// md5 hex digest of an ImageSpec `copy` list, as flytekit's
/// `compute_digest(paths, None)`. Relative entries are resolved against the
/// current directory, as in flytekit; missing entries are skipped silently,
/// as in flytekit.
pub fn copy_digest(paths: &[PathBuf], cache: Option<&DigestCache>) -> Result<String, DigestError> {
    copy_digest_with(paths, cache, Mode::auto()).map(|o| o.digest)
}

pub(crate) fn copy_digest_with(
    paths: &[PathBuf],
    cache: Option<&DigestCache>,
    mode: Mode,
) -> Result<Outcome, DigestError> {
    let listed_at = SystemTime::now();
    let mut found = Vec::new();
    let mut identity = Vec::new();
    for path in paths {
        identity.extend_from_slice(path.as_os_str().as_bytes());
        identity.push(0);
        if let CopyEntry::Files(f) = list_copy_entry(path) {
            found.extend(f);
        }
    }
    let (files, stamps) = to_source_files(found)?;
    digest_files(
        "copy-v1", &identity, &files, &stamps, listed_at, cache, mode,
    )
}

/// The files a copy list contributes, in digest order: `relative` is the
/// path inside the entry's destination (for a directory entry, relative to
/// that directory; for a file entry, its base name) and `absolute` where to
/// read it. Call it with one entry at a time to know which entry a file
/// belongs to. Unlike [`copy_digest`], a missing entry is an error
/// ([`DigestError::MissingCopyEntry`]), because flytekit's image builder
/// fails on it.
pub fn copy_files(paths: &[PathBuf]) -> Result<Vec<SourceFile>, DigestError> {
    let mut found = Vec::new();
    for path in paths {
        match list_copy_entry(path) {
            CopyEntry::Files(f) => found.extend(f),
            CopyEntry::Missing(e) => return Err(e),
        }
    }
    Ok(to_source_files(found)?.0)
}

#[cfg(test)]
#[path = "tree_tests.rs"]
mod tests;
