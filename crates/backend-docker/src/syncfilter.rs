//! Which context nodes one file-sync request asks for.
//!
//! BuildKit names what it wants from a local source with include patterns (the Dockerfile frontend asks the
//! `dockerfile` source for just the Dockerfile, the `context` source for `.dockerignore` before the rest), follow
//! paths (included like include patterns; berth's context holds no links to follow) and exclude patterns (a
//! `.dockerignore` among the context files, `!` re-including). The sender applies them; the receiver takes what
//! comes. Patterns are Docker's: `*` and `?` within one path component, `**` across components, `[...]` classes,
//! `\` escapes, and a pattern naming a folder covers everything under it. A folder is sent when something under it
//! is, as the walk would reach it. A folder no include pattern can reach into is not walked at all: the
//! Dockerfile frontend asks three syncs per build, two of them for one file each, and the third for the
//! `COPY` sources only, so a context's other files are never looked at.

use berth_context::Select;

/// What one request asked for, its patterns cleaned.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Include patterns and follow paths; empty means everything.
    includes: Vec<String>,
    /// Exclude patterns in order, each with whether it was `!pattern` (re-including).
    excludes: Vec<(bool, String)>,
}

impl Filter {
    /// The filter of `includes` (and follow paths) and `excludes`, as the request's headers give them.
    pub(crate) fn new(includes: Vec<String>, excludes: Vec<String>) -> Filter {
        Filter {
            includes: includes.iter().map(|p| clean(p)).collect(),
            excludes: excludes
                .iter()
                .map(|p| match p.strip_prefix('!') {
                    Some(rest) => (true, clean(rest)),
                    None => (false, clean(p)),
                })
                .filter(|(_, p)| !p.is_empty())
                .collect(),
        }
    }
}

impl Select for Filter {
    fn wants(&self, path: &str) -> bool {
        let included = self.includes.is_empty() || self.includes.iter().any(|p| covers(p, path));
        let mut excluded = false;
        for (negated, pattern) in &self.excludes {
            if covers(pattern, path) {
                excluded = !negated;
            }
        }
        included && !excluded
    }

    /// Excludes never skip a folder: a later `!pattern` may take back part of it.
    fn may_want_under(&self, folder: &str) -> bool {
        self.includes.is_empty()
            || self
                .includes
                .iter()
                .any(|p| covers(p, folder) || may_match_under(p, folder))
    }
}

/// Whether `pattern` may match something under `folder`: the folder's components match the pattern's first
/// ones, or a `**` comes before the pattern runs out of components to compare.
fn may_match_under(pattern: &str, folder: &str) -> bool {
    let mut parts = pattern.split('/');
    for component in folder.split('/') {
        match parts.next() {
            None => return false,
            Some(part) if part.contains("**") => return true,
            Some(part) if !glob(part.as_bytes(), component.as_bytes()) => return false,
            Some(_) => {}
        }
    }
    parts.next().is_some()
}

/// A pattern as Docker cleans it: no leading `/` or `./`, no trailing `/`, no empty or `.` components.
fn clean(pattern: &str) -> String {
    pattern
        .split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .collect::<Vec<_>>()
        .join("/")
}

/// Whether `pattern` matches `path` or one of the folders holding it.
fn covers(pattern: &str, path: &str) -> bool {
    let mut candidate = path;
    loop {
        if glob(pattern.as_bytes(), candidate.as_bytes()) {
            return true;
        }
        match candidate.rsplit_once('/') {
            Some((parent, _)) => candidate = parent,
            None => return false,
        }
    }
}

/// Docker's pattern syntax against a whole path.
fn glob(pattern: &[u8], path: &[u8]) -> bool {
    match pattern.split_first() {
        None => path.is_empty(),
        Some((b'*', rest)) if rest.first() == Some(&b'*') => {
            // `**` spans components; `**/` may also match nothing at all
            let rest = &rest[1..];
            let after_slash = rest.strip_prefix(b"/").unwrap_or(rest);
            (0..=path.len()).any(|i| glob(rest, &path[i..]) || glob(after_slash, &path[i..]))
        }
        Some((b'*', rest)) => {
            let run = path.iter().position(|&b| b == b'/').unwrap_or(path.len());
            (0..=run).any(|i| glob(rest, &path[i..]))
        }
        Some((b'?', rest)) => {
            matches!(path.first(), Some(&b) if b != b'/') && glob(rest, &path[1..])
        }
        Some((b'[', rest)) => match (path.first(), class(rest)) {
            (Some(&b), Some((matches, after))) if b != b'/' && matches(b) => {
                glob(after, &path[1..])
            }
            _ => false,
        },
        Some((b'\\', rest)) if !rest.is_empty() => {
            path.first() == rest.first() && glob(&rest[1..], &path[1..])
        }
        Some((&c, rest)) => path.first() == Some(&c) && glob(rest, &path[1..]),
    }
}

/// A `[...]` class (after the `[`): a test for one byte and the pattern after the `]`; `None` when unclosed.
#[allow(clippy::type_complexity)]
fn class(pattern: &[u8]) -> Option<(Box<dyn Fn(u8) -> bool + '_>, &[u8])> {
    let (negated, body) = match pattern.first() {
        Some(b'^') | Some(b'!') => (true, &pattern[1..]),
        _ => (false, pattern),
    };
    let end = body.iter().skip(1).position(|&b| b == b']')? + 1;
    let (set, after) = (&body[..end], &body[end + 1..]);
    let test = move |b: u8| {
        let mut i = 0;
        let mut hit = false;
        while i < set.len() {
            if i + 2 < set.len() && set[i + 1] == b'-' {
                hit |= set[i] <= b && b <= set[i + 2];
                i += 3;
            } else {
                hit |= set[i] == b;
                i += 1;
            }
        }
        hit != negated
    };
    Some((Box::new(test), after))
}

#[cfg(test)]
mod tests {
    use super::*;
    use berth_context::{Tree, DOCKERFILE_NAME};
    use berth_core::plan::{ContextEntry, ContextSource};

    fn paths(filter: &Filter) -> Vec<String> {
        let entries: Vec<ContextEntry> = ["a/b/c.py", "a/d.txt", "e.py", ".dockerignore"]
            .iter()
            .map(|p| ContextEntry {
                path: p.to_string(),
                source: ContextSource::Bytes(b"x".to_vec()),
            })
            .collect();
        let tree = Tree::new("FROM x", entries).expect("tree");
        let nodes = tree.walk(filter).map(|n| n.expect("node").path);
        nodes.collect()
    }

    fn including(includes: &[&str]) -> Filter {
        Filter::new(includes.iter().map(|s| s.to_string()).collect(), vec![])
    }

    #[test]
    fn includes_pick_files_and_their_folders() {
        let only = |includes: &[&str]| paths(&including(includes));
        assert_eq!(only(&[DOCKERFILE_NAME]), [DOCKERFILE_NAME]);
        assert_eq!(only(&["/.dockerignore"]), [".dockerignore"]);
        assert_eq!(only(&["a/b"]), ["a", "a/b", "a/b/c.py"]);
        assert_eq!(only(&["**/*.py"]), ["a", "a/b", "a/b/c.py", "e.py"]);
        assert_eq!(only(&["*.py"]), ["e.py"]);
        assert_eq!(only(&["a/?.txt", "[e]*"]), ["a", "a/d.txt", "e.py"]);
        assert_eq!(only(&[]).len(), 7, "{:?}", only(&[]));
    }

    #[test]
    fn excludes_apply_in_order_with_negation() {
        let filter = Filter::new(vec![], vec!["a".into(), "!a/d.txt".into(), "*.py".into()]);
        assert_eq!(
            paths(&filter),
            [DOCKERFILE_NAME, ".dockerignore", "a", "a/d.txt"]
        );
    }

    #[test]
    fn only_folders_that_may_hold_an_included_path_are_entered() {
        let under = |includes: &[&str], folder: &str| including(includes).may_want_under(folder);
        assert!(under(&[], "any"));
        assert!(under(&["tree/q0"], "tree"));
        assert!(under(&["tree/q0"], "tree/q0/pkg"));
        assert!(!under(&["tree/q0"], "tree/q1"));
        assert!(!under(&["tree/q0"], "other"));
        assert!(!under(&[DOCKERFILE_NAME], "tree"));
        assert!(under(&["*/q1"], "tree"));
        assert!(!under(&["*/q1"], "tree/q0"));
        assert!(under(&["a/**/x.py"], "a/b/c"));
        assert!(under(&["**/x.py"], "z"));
        // a folder is entered whenever excludes alone are given: `!` may take part of it back
        assert!(Filter::new(vec![], vec!["a".into()]).may_want_under("a"));
    }
}
