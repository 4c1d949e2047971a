//! flytekit's `IgnoreGroup(root, [GitIgnore, DockerIgnore, StandardIgnore])`.
//!
//! A file is ignored when any of the three says so, checked in that order
//! (the order only matters for which error surfaces first, as in Python).
//! Paths handed in are relative to the root and use `/`.

use std::collections::HashSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::thread::JoinHandle;

use crate::dockerignore::DockerIgnore;
use crate::glob::PyFnmatch;
use crate::DigestError;

/// flytekit's `STANDARD_IGNORE_PATTERNS`, matched with Python's `fnmatch`
/// (so `*` crosses `/`: `*.pyc` ignores `.pyc` files at any depth, while
/// `.cache` and `__pycache__/*` only apply at the top).
const STANDARD_IGNORE_PATTERNS: [&str; 5] = [
    "*.pyc",
    ".cache",
    ".cache/*",
    "__pycache__/*",
    "**/__pycache__/*",
];

/// The files git reports as ignored, being computed in the background.
pub(crate) struct PendingGit(Option<JoinHandle<HashSet<String>>>);

impl PendingGit {
    /// Starts `git ls-files -io --exclude-standard` in `root`, so it runs
    /// while the tree is being walked.
    pub(crate) fn spawn(root: &Path) -> PendingGit {
        let root = root.to_path_buf();
        let handle = std::thread::Builder::new()
            .name("berth-digest-git".to_owned())
            .spawn(move || git_ignored_files(&root))
            .ok();
        PendingGit(handle)
    }

    /// Waits for git and returns the set of ignored paths.
    pub(crate) fn wait(self) -> HashSet<String> {
        self.0.and_then(|h| h.join().ok()).unwrap_or_default()
    }
}

/// flytekit's `GitIgnore._list_ignored_files`.
///
/// flytekit runs git twice, also with `--directory`, but that second list
/// is only consulted for paths that are directories, and only files are ever
/// checked when listing a tree, so it is not needed here.
///
/// The output is parsed exactly as flytekit does (no `-z`): paths git quotes
/// (non-ASCII, tab, newline, `"` and `\` under the default
/// `core.quotePath`) therefore never equal a real path, and such files are
/// *not* ignored by this rule even when `.gitignore` lists them. A missing
/// git, a directory outside any repository or any git failure yields an
/// empty set: nothing is ignored by git then.
fn git_ignored_files(root: &Path) -> HashSet<String> {
    let output = Command::new("git")
        .args(["ls-files", "-io", "--exclude-standard"])
        .current_dir(root)
        .stdin(Stdio::null())
        .output();
    match output {
        Ok(out) if out.status.success() => {
            let text = String::from_utf8_lossy(&out.stdout);
            let mut lines: Vec<&str> = text.split('\n').collect();
            // Python's `split("\n")[:-1]` drops the last piece, whatever it is.
            lines.pop();
            lines.into_iter().map(str::to_owned).collect()
        }
        _ => HashSet::new(),
    }
}

/// The combined ignore rules of a source root.
pub(crate) struct IgnoreGroup {
    git: HashSet<String>,
    docker: DockerIgnore,
    standard: Vec<PyFnmatch>,
}

impl IgnoreGroup {
    /// Builds the group from git's answer and `root/.dockerignore`.
    pub(crate) fn new(root: &Path, git: HashSet<String>) -> Result<IgnoreGroup, DigestError> {
        Ok(IgnoreGroup {
            git,
            docker: DockerIgnore::load(root)?,
            standard: STANDARD_IGNORE_PATTERNS
                .iter()
                .map(|p| PyFnmatch::new(p))
                .collect(),
        })
    }

    /// A group from explicit parts (for tests).
    #[cfg(test)]
    pub(crate) fn from_parts(git: &[&str], dockerignore: &str) -> IgnoreGroup {
        IgnoreGroup {
            git: git.iter().map(|s| (*s).to_owned()).collect(),
            docker: DockerIgnore::parse(dockerignore, ".dockerignore".into()),
            standard: STANDARD_IGNORE_PATTERNS
                .iter()
                .map(|p| PyFnmatch::new(p))
                .collect(),
        }
    }

    /// Whether the file at relative posix path `path` is ignored.
    pub(crate) fn is_ignored(&self, path: &str) -> Result<bool, DigestError> {
        if self.git.contains(path) {
            return Ok(true);
        }
        // Without patterns only `!.dockerignore` is left, which can't ignore.
        if !self.docker.is_empty() && self.docker.matches(path)? {
            return Ok(true);
        }
        Ok(self.standard.iter().any(|p| p.matches(path)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_patterns_follow_python_fnmatch() {
        let g = IgnoreGroup::from_parts(&[], "");
        for (path, want) in [
            ("a.pyc", true),
            ("deep/er/x.pyc", true),
            ("x.pyc.txt", false),
            (".cache", true),
            ("sub/.cache", false),
            (".cache/x/y", true),
            ("__pycache__/m.py", true),
            ("a/__pycache__/m.py", true),
            ("a/__pycache__", false),
            ("my__pycache__/x", false),
            ("X.PYC", false),
        ] {
            assert_eq!(g.is_ignored(path).ok(), Some(want), "{path}");
        }
    }

    #[test]
    fn git_list_is_exact_string_membership() {
        let g = IgnoreGroup::from_parts(&["build/out.txt", "\"\\303\\274.log\""], "");
        assert_eq!(g.is_ignored("build/out.txt").ok(), Some(true));
        assert_eq!(g.is_ignored("build").ok(), Some(false));
        // git quoted the non-ASCII name, so flytekit never matches it.
        assert_eq!(g.is_ignored("\u{fc}.log").ok(), Some(false));
    }

    #[test]
    fn dockerignore_participates() {
        let g = IgnoreGroup::from_parts(&[], "secret\n");
        assert_eq!(g.is_ignored("secret/key").ok(), Some(true));
        assert_eq!(g.is_ignored("public").ok(), Some(false));
    }

    #[test]
    fn git_outside_a_repository_ignores_nothing() {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        std::fs::write(dir.path().join("x.pyc"), b"").unwrap_or_else(|e| panic!("{e}"));
        assert!(PendingGit::spawn(dir.path()).wait().is_empty());
    }
}
