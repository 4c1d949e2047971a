//! The files of a `copy:` folder, as the build context holds them.
//!
//! The folder itself was checked when the spec was loaded (inside the spec's folder, symlinks resolved). A real
//! folder's children stay where it is, so only a symlink can lead out: only symlinks are resolved here. Resolving
//! every file (a `realpath`: one `readlink` per path component) cost more than the rest of planning a large tree
//! (330,000 calls for 40,804 files). Symlinked folders are followed, as flytekit's builder copies them; one that
//! leads back to a folder it is inside is refused instead of being walked until the path grows too long.

use std::fs::DirEntry;
use std::path::{Path, PathBuf};

use crate::error::Error;

/// A file to copy: its path inside the context and where to read it.
pub(super) struct CopiedFile {
    pub(super) inside: String,
    pub(super) source: PathBuf,
}

/// Why a folder's files cannot be listed, before the spec's name is put on it.
#[derive(Debug)]
pub(super) enum Refusal {
    /// An I/O error at a path.
    Io(Error),
    /// What is wrong and how to fix it (the caller makes it an invalid-spec error).
    Invalid { message: String, hint: &'static str },
}

/// The files under `dir` (which resolves to `real`), sorted by name at each level, named `prefix/...`, refusing
/// symlinks that lead outside `boundary` or back into a folder being walked.
pub(super) fn folder_files(
    dir: &Path,
    real: &Path,
    prefix: &str,
    boundary: &Path,
) -> std::result::Result<Vec<CopiedFile>, Refusal> {
    let mut walk = Walk {
        boundary,
        walking: vec![real.to_path_buf()],
        files: Vec::new(),
    };
    walk.folder(dir, prefix)?;
    Ok(walk.files)
}

struct Walk<'a> {
    boundary: &'a Path,
    /// The resolved paths of the folders from the entry down to the one being listed.
    walking: Vec<PathBuf>,
    files: Vec<CopiedFile>,
}

impl Walk<'_> {
    fn folder(&mut self, dir: &Path, prefix: &str) -> std::result::Result<(), Refusal> {
        let io = |e| Refusal::Io(Error::io(dir, e));
        let mut entries: Vec<DirEntry> = std::fs::read_dir(dir)
            .map_err(io)?
            .collect::<std::io::Result<_>>()
            .map_err(io)?;
        entries.sort_by_key(|e| e.file_name());
        for entry in entries {
            let path = entry.path();
            let inside = format!("{prefix}/{}", entry.file_name().to_string_lossy());
            let kind = entry
                .file_type()
                .map_err(|e| Refusal::Io(Error::io(&path, e)))?;
            let real = if kind.is_symlink() {
                let resolved = self.resolve(&path)?;
                if !resolved.is_dir() {
                    self.file(inside, path);
                    continue;
                }
                resolved
            } else if kind.is_dir() {
                self.current().join(entry.file_name())
            } else {
                self.file(inside, path);
                continue;
            };
            self.walking.push(real);
            self.folder(&path, &inside)?;
            self.walking.pop();
        }
        Ok(())
    }

    fn current(&self) -> &Path {
        self.walking
            .last()
            .expect("the entry's folder is always there")
    }

    fn file(&mut self, inside: String, source: PathBuf) {
        self.files.push(CopiedFile { inside, source });
    }

    /// Where a symlink leads, if it stays inside the spec's folder and out of the folders being walked.
    fn resolve(&self, link: &Path) -> std::result::Result<PathBuf, Refusal> {
        let resolved = link
            .canonicalize()
            .map_err(|e| Refusal::Io(Error::io(link, e)))?;
        if !resolved.starts_with(self.boundary) {
            return Err(Refusal::Invalid {
                message: format!(
                    "copy: {} leads outside the spec's folder through a symlink (to {})",
                    link.display(),
                    resolved.display()
                ),
                hint:
                    "copy the files the link points to under the spec's folder, or remove the link",
            });
        }
        if self.walking.contains(&resolved) {
            return Err(Refusal::Invalid {
                message: format!(
                    "copy: {} is a symlink to {}, a folder it is inside: copying it would never end",
                    link.display(),
                    resolved.display()
                ),
                hint: "remove the link, or move it out of the copied folder",
            });
        }
        Ok(resolved)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path();
        for (path, text) in [
            ("spec/data/b.txt", "b"),
            ("spec/data/a/z.txt", "z"),
            ("spec/data/a/y.txt", "y"),
            ("spec/shared/s.txt", "s"),
            ("outside.txt", "secret"),
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().expect("a parent")).expect("test tree");
            std::fs::write(path, text).expect("test tree");
        }
        dir
    }

    fn list(root: &Path) -> std::result::Result<Vec<(String, PathBuf)>, Refusal> {
        let boundary = root.join("spec").canonicalize().expect("resolved");
        let dir = root.join("spec/data");
        let real = dir.canonicalize().expect("resolved");
        folder_files(&dir, &real, "data", &boundary)
            .map(|files| files.into_iter().map(|f| (f.inside, f.source)).collect())
    }

    fn refusal(result: std::result::Result<Vec<(String, PathBuf)>, Refusal>) -> String {
        match result {
            Ok(files) => panic!("listed {} files", files.len()),
            Err(Refusal::Invalid { message, .. }) => message,
            Err(Refusal::Io(e)) => panic!("an I/O error instead of a refusal: {e}"),
        }
    }

    #[test]
    fn lists_files_sorted_at_each_level_and_follows_symlinks_inside() {
        let dir = tree();
        let root = dir.path();
        symlink(root.join("spec/shared"), root.join("spec/data/c")).expect("test tree");
        symlink(root.join("spec/shared/s.txt"), root.join("spec/data/d.txt")).expect("test tree");
        let names: Vec<String> = list(root)
            .expect("listed")
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(
            names,
            [
                "data/a/y.txt",
                "data/a/z.txt",
                "data/b.txt",
                "data/c/s.txt",
                "data/d.txt"
            ]
        );
    }

    #[test]
    fn refuses_a_symlink_leading_outside_the_spec_folder() {
        let dir = tree();
        let root = dir.path();
        symlink(root.join("outside.txt"), root.join("spec/data/a/leak.txt")).expect("test tree");
        let message = refusal(list(root));
        assert!(
            message.contains("leads outside the spec's folder"),
            "{message}"
        );
        assert!(message.contains("leak.txt"), "{message}");
    }

    #[test]
    fn refuses_a_symlink_back_into_a_folder_it_is_in() {
        let dir = tree();
        let root = dir.path();
        symlink(root.join("spec/data"), root.join("spec/data/a/up")).expect("test tree");
        let message = refusal(list(root));
        assert!(message.contains("a folder it is inside"), "{message}");
    }

    #[test]
    fn refuses_two_folders_linking_to_each_other() {
        let dir = tree();
        let root = dir.path();
        symlink(root.join("spec/shared"), root.join("spec/data/a/to-shared")).expect("test tree");
        symlink(root.join("spec/data/a"), root.join("spec/shared/to-a")).expect("test tree");
        let message = refusal(list(root));
        assert!(message.contains("a folder it is inside"), "{message}");
    }
}
