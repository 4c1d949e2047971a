//! Which context nodes one file-sync request asks for.
//!
//! BuildKit names what it wants from a local source with include patterns (the Dockerfile frontend asks the
//! `dockerfile` source for just the Dockerfile, the `context` source for `.dockerignore` before the rest), follow
//! paths (included like include patterns; berth's context holds no links to follow) and exclude patterns (a
//! `.dockerignore` among the context files, `!` re-including). The sender applies them; the receiver takes what
//! comes. Patterns are Docker's: `*` and `?` within one path component, `**` across components, `[...]` classes,
//! `\` escapes, and a pattern naming a folder covers everything under it. A folder is sent when something under it
//! is, as the walk would reach it.

use berth_context::{Content, Node};

/// What one request asked for.
#[derive(Debug, Default)]
pub(crate) struct Filter {
    /// Include patterns and follow paths; empty means everything.
    pub(crate) includes: Vec<String>,
    /// Exclude patterns in order; `!pattern` re-includes.
    pub(crate) excludes: Vec<String>,
}

impl Filter {
    /// The nodes of `nodes` (in walk order) this filter lets through, in the same order.
    pub(crate) fn apply(&self, nodes: Vec<Node>) -> Vec<Node> {
        let includes: Vec<String> = self.includes.iter().map(|p| clean(p)).collect();
        let excludes: Vec<(bool, String)> = self
            .excludes
            .iter()
            .map(|p| match p.strip_prefix('!') {
                Some(rest) => (true, clean(rest)),
                None => (false, clean(p)),
            })
            .filter(|(_, p)| !p.is_empty())
            .collect();
        let wanted = |path: &str| {
            let included = includes.is_empty() || includes.iter().any(|p| covers(p, path));
            let mut excluded = false;
            for (negated, pattern) in &excludes {
                if covers(pattern, path) {
                    excluded = !negated;
                }
            }
            included && !excluded
        };
        let mut parents = std::collections::HashSet::new();
        let mut kept: Vec<bool> = Vec::with_capacity(nodes.len());
        for node in &nodes {
            let keep = !matches!(node.content, Content::Dir) && wanted(&node.path);
            if keep {
                let mut path = node.path.as_str();
                while let Some((parent, _)) = path.rsplit_once('/') {
                    parents.insert(parent.to_string());
                    path = parent;
                }
            }
            kept.push(keep);
        }
        // a folder goes when something under it goes, or when it is itself wanted
        nodes
            .into_iter()
            .zip(kept)
            .filter(|(node, keep)| {
                *keep
                    || matches!(node.content, Content::Dir)
                        && (parents.contains(&node.path) || wanted(&node.path))
            })
            .map(|(node, _)| node)
            .collect()
    }
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
    use berth_context::DOCKERFILE_NAME;
    use berth_core::plan::{ContextEntry, ContextSource};

    fn paths(filter: &Filter) -> Vec<String> {
        let entries: Vec<ContextEntry> = ["a/b/c.py", "a/d.txt", "e.py", ".dockerignore"]
            .iter()
            .map(|p| ContextEntry {
                path: p.to_string(),
                source: ContextSource::Bytes(b"x".to_vec()),
            })
            .collect();
        let nodes = berth_context::tree("FROM x", &entries).expect("tree");
        filter.apply(nodes).into_iter().map(|n| n.path).collect()
    }

    #[test]
    fn includes_pick_files_and_their_folders() {
        let only = |includes: &[&str]| {
            paths(&Filter {
                includes: includes.iter().map(|s| s.to_string()).collect(),
                excludes: vec![],
            })
        };
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
        let filter = Filter {
            includes: vec![],
            excludes: vec!["a".into(), "!a/d.txt".into(), "*.py".into()],
        };
        assert_eq!(
            paths(&filter),
            [DOCKERFILE_NAME, ".dockerignore", "a", "a/d.txt"]
        );
    }
}
