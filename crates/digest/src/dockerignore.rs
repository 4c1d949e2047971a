//! `.dockerignore` matching as flytekit does it: flytekit's `DockerIgnore`
//! reading the file, fed to docker-py's `PatternMatcher`.
//!
//! Quirks reproduced:
//! * lines are read in Python text mode (`\r\n` and `\r` end lines too);
//!   a line is a comment only if its very first character is `#`; each
//!   line is then `str.strip()`ped (Python's notion of whitespace);
//! * a leading `!` makes an exclusion (re-inclusion); the rest is stripped
//!   again, split on `/`, empty and `.` parts dropped and every `..` removed
//!   together with the part before it (`a/../b` is `b`, `../b` is `b`);
//!   patterns left with no part are dropped;
//! * `!.dockerignore` is always appended as the last pattern;
//! * matching lower-cases both path and pattern (docker-py's `fnmatch`),
//!   `*`/`?` stop at `/`, `**` crosses directories;
//! * a pattern with `n` parts that does not match the path is also tried
//!   against the first `n` parts of the path's parent directory, so `dir`
//!   and `dir/*` also exclude `dir/sub/file`;
//! * the last pattern that matches decides.

use std::path::{Path, PathBuf};

use crate::glob::{python_strip, DockerGlob};
use crate::DigestError;

/// One parsed `.dockerignore` line.
#[derive(Debug)]
struct Pattern {
    exclusion: bool,
    parts: usize,
    /// Compile errors are kept and reported on first use, like Python,
    /// which compiles lazily inside `fnmatch`.
    glob: Result<DockerGlob, String>,
    line: String,
}

impl Pattern {
    /// docker-py's `Pattern(pattern_str)`; `None` when it has no part left.
    fn new(line: &str) -> Option<Pattern> {
        let (exclusion, rest) = match line.strip_prefix('!') {
            Some(rest) => (true, rest),
            None => (false, line),
        };
        let mut parts: Vec<&str> = python_strip(rest)
            .split('/')
            .filter(|p| !p.is_empty() && *p != ".")
            .collect();
        let mut i = 0;
        while i < parts.len() {
            if parts[i] == ".." {
                parts.remove(i);
                if i > 0 {
                    parts.remove(i - 1);
                    i -= 1;
                }
            } else {
                i += 1;
            }
        }
        if parts.is_empty() {
            return None;
        }
        let cleaned = parts.join("/").to_lowercase();
        Some(Pattern {
            exclusion,
            parts: parts.len(),
            glob: DockerGlob::new(&cleaned),
            line: line.to_owned(),
        })
    }
}

/// The patterns of one `.dockerignore` (possibly none).
#[derive(Debug)]
pub(crate) struct DockerIgnore {
    patterns: Vec<Pattern>,
    file: PathBuf,
}

impl DockerIgnore {
    /// Reads `root/.dockerignore` if it is a file (symlinks followed);
    /// otherwise only the implicit `!.dockerignore` pattern is present.
    pub(crate) fn load(root: &Path) -> Result<DockerIgnore, DigestError> {
        let file = root.join(".dockerignore");
        let is_file = std::fs::metadata(&file)
            .map(|m| m.is_file())
            .unwrap_or(false);
        if !is_file {
            return Ok(DockerIgnore::parse("", file));
        }
        let bytes = std::fs::read(&file).map_err(|e| DigestError::io(&file, e))?;
        let text = String::from_utf8(bytes).map_err(|_| DigestError::InvalidDockerignore {
            path: file.clone(),
            reason: "it is not valid UTF-8".to_owned(),
        })?;
        Ok(DockerIgnore::parse(&text, file))
    }

    /// Parses the text of a `.dockerignore`; `file` is used in errors.
    pub(crate) fn parse(text: &str, file: PathBuf) -> DockerIgnore {
        // Python text mode: universal newlines, then `readlines()`.
        let text = text.replace("\r\n", "\n").replace('\r', "\n");
        let mut lines: Vec<&str> = text.split('\n').collect();
        if lines.last() == Some(&"") {
            lines.pop();
        }
        let mut patterns: Vec<Pattern> = lines
            .into_iter()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| Pattern::new(python_strip(l)))
            .collect();
        patterns.extend(Pattern::new("!.dockerignore"));
        DockerIgnore { patterns, file }
    }

    /// Whether the relative posix path `path` is excluded.
    pub(crate) fn matches(&self, path: &str) -> Result<bool, DigestError> {
        let lower = path.to_lowercase();
        let parent = match lower.rfind('/') {
            Some(i) => &lower[..i],
            None => "",
        };
        let parent_parts = if parent.is_empty() {
            0
        } else {
            parent.split('/').filter(|p| !p.is_empty()).count()
        };
        let mut matched = false;
        for pattern in &self.patterns {
            let glob =
                pattern
                    .glob
                    .as_ref()
                    .map_err(|reason| DigestError::InvalidDockerignore {
                        path: self.file.clone(),
                        reason: format!("pattern {:?}: {reason}", pattern.line),
                    })?;
            let mut hit = glob.matches(&lower);
            if !hit && !parent.is_empty() && pattern.parts <= parent_parts {
                hit = glob.matches(leading_parts(parent, pattern.parts));
            }
            if hit {
                matched = !pattern.exclusion;
            }
        }
        Ok(matched)
    }

    /// Whether any pattern besides the implicit `!.dockerignore` exists.
    pub(crate) fn is_empty(&self) -> bool {
        self.patterns.len() <= 1
    }
}

/// The first `n` `/`-separated parts of a clean relative path.
fn leading_parts(path: &str, n: usize) -> &str {
    match path.match_indices('/').nth(n.wrapping_sub(1)) {
        Some((i, _)) if n > 0 => &path[..i],
        _ => path,
    }
}

#[cfg(test)]
#[path = "dockerignore_tests.rs"]
mod tests;
