//! The build context as files and folders walked one at a time, for an engine that fetches it file by file
//! (BuildKit's file sync) instead of reading one tar.
//!
//! It holds the same entries as the tar of [`crate::stream`]: the rendered Dockerfile, the plan's context files
//! and their parent folders. The order is the one BuildKit's receiver checks (a folder before what it holds,
//! names within a folder in byte order), which sorting paths component by component gives: the entries are
//! sorted once, and each walk goes through them producing one node at a time, looking at a file on disk only
//! when the walk reaches it and the caller wants it, and skipping every entry under a folder the caller says
//! holds nothing it wants. A walk of a context of any size holds one node and the chain of folders above it,
//! not a list of every node.
//!
//! Each node carries what BuildKit compares to decide whether its cached copy of a file is still good: mode,
//! size and mtime in nanoseconds. Files from disk keep their own; generated entries get the tar's fixed mtime
//! plus nanoseconds taken from a digest of their bytes, so a generated file whose bytes change but not its size
//! is still seen as changed, and identical plans still give identical metadata.

use std::cmp::Ordering;
use std::collections::VecDeque;

use berth_core::plan::{ContextEntry, ContextSource};
use berth_core::{Error, Result};
use sha2::{Digest, Sha256};

use crate::{check_path, file_mode, DOCKERFILE_NAME, FIXED_MTIME};

/// The context of one build: its entries (the Dockerfile among them) in walk order, one per path.
#[derive(Debug)]
pub struct Tree {
    entries: Vec<ContextEntry>,
}

/// One file or folder of the context, as a walk reaches it.
#[derive(Debug, Clone)]
pub struct Node {
    /// Path inside the context, `/`-separated, relative.
    pub path: String,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    /// Bytes of a file; 0 for a folder.
    pub size: u64,
    /// Modification time, nanoseconds since the epoch.
    pub mtime_ns: i64,
    /// The file's entry ([`Tree::entry`]); `None` for a folder.
    pub entry: Option<usize>,
}

/// What a walk asks its caller about each path.
pub trait Select {
    /// Whether the file or folder at `path` is sent. A folder is also sent when something under it is.
    fn wants(&self, path: &str) -> bool;
    /// Whether anything under the folder `path` may be wanted; `false` skips everything under it unseen.
    fn may_want_under(&self, folder: &str) -> bool;
}

/// Selects every path.
#[derive(Debug, Clone, Copy, Default)]
pub struct Everything;

impl Select for Everything {
    fn wants(&self, _path: &str) -> bool {
        true
    }

    fn may_want_under(&self, _folder: &str) -> bool {
        true
    }
}

impl Tree {
    /// The context of `dockerfile` and `entries`, sorted (nothing on disk is looked at yet). A later entry of
    /// the same path replaces an earlier one, as it would when the tar is extracted. Fails for paths that
    /// cannot go into a context, and for a path that is both a file and a folder holding other files.
    pub fn new(dockerfile: &str, mut entries: Vec<ContextEntry>) -> Result<Tree> {
        for entry in &entries {
            check_path(&entry.path)?;
        }
        entries.push(ContextEntry {
            path: DOCKERFILE_NAME.to_string(),
            source: ContextSource::Bytes(dockerfile.as_bytes().to_vec()),
        });
        // stable: of the entries of one path, the last given stays last
        entries.sort_by(|a, b| walk_order(&a.path, &b.path));
        let mut kept: Vec<ContextEntry> = Vec::with_capacity(entries.len());
        for entry in entries {
            match kept.last_mut() {
                Some(last) if last.path == entry.path => *last = entry,
                // what a file holds sorts right after it
                Some(last) if is_under(&entry.path, &last.path) => {
                    return Err(conflict(&last.path));
                }
                _ => kept.push(entry),
            }
        }
        Ok(Tree { entries: kept })
    }

    /// The entries, in walk order.
    pub fn entries(&self) -> &[ContextEntry] {
        &self.entries
    }

    /// The entry of a file node ([`Node::entry`]).
    pub fn entry(&self, index: usize) -> Option<&ContextEntry> {
        self.entries.get(index)
    }

    /// Walks the nodes `select` lets through, in walk order. A file is looked at on disk when the walk reaches
    /// it; one that is missing or not a regular file ends the walk with an error.
    pub fn walk<'a, S: Select>(&'a self, select: &'a S) -> Walk<'a, S> {
        Walk {
            tree: self,
            select,
            next: 0,
            open: Vec::new(),
            ready: VecDeque::new(),
        }
    }
}

/// A walk of a [`Tree`]: an iterator of its nodes.
pub struct Walk<'a, S> {
    tree: &'a Tree,
    select: &'a S,
    /// The next entry to look at.
    next: usize,
    /// The folders holding the last entry looked at, outermost first, and whether each was sent.
    open: Vec<(&'a str, bool)>,
    /// Nodes found and not yet handed out: the folders above a file, then the file.
    ready: VecDeque<Node>,
}

impl<S: Select> Walk<'_, S> {
    /// Queues every open folder not sent yet, outermost first.
    fn send_open(&mut self) {
        for (path, sent) in self.open.iter_mut().filter(|(_, sent)| !*sent) {
            *sent = true;
            self.ready.push_back(dir(path));
        }
    }
}

impl<'a, S: Select> Iterator for Walk<'a, S> {
    type Item = Result<Node>;

    fn next(&mut self) -> Option<Result<Node>> {
        loop {
            if let Some(node) = self.ready.pop_front() {
                return Some(Ok(node));
            }
            let tree: &'a Tree = self.tree;
            let entries = &tree.entries;
            let index = self.next;
            let path = entries.get(index)?.path.as_str();
            self.next += 1;
            let folders = path.match_indices('/').map(|(end, _)| &path[..end]);
            let common = self
                .open
                .iter()
                .zip(folders.clone())
                .take_while(|((open, _), folder)| open == folder)
                .count();
            self.open.truncate(common);
            let mut skipped = None;
            for folder in folders.skip(common) {
                self.open.push((folder, false));
                if self.select.wants(folder) {
                    self.send_open();
                }
                if !self.select.may_want_under(folder) {
                    skipped = Some(folder);
                    break;
                }
            }
            if let Some(folder) = skipped {
                // what a folder holds is one run of entries, starting here
                self.next = index + entries[index..].partition_point(|e| is_under(&e.path, folder));
                continue;
            }
            if self.select.wants(path) {
                self.send_open();
                match node(index, &entries[index]) {
                    Ok(node) => self.ready.push_back(node),
                    Err(e) => {
                        self.next = entries.len();
                        return Some(Err(e));
                    }
                }
            }
        }
    }
}

/// Component by component, each in byte order: a folder sorts right before what it holds.
fn walk_order(a: &str, b: &str) -> Ordering {
    a.split('/').cmp(b.split('/'))
}

/// Whether `path` is under the folder `folder`.
fn is_under(path: &str, folder: &str) -> bool {
    path.len() > folder.len() && path.starts_with(folder) && path.as_bytes()[folder.len()] == b'/'
}

fn conflict(path: &str) -> Error {
    Error::invalid(format!(
        "context path `{path}` is both a file and a folder holding other context files"
    ))
}

fn dir(path: &str) -> Node {
    Node {
        path: path.to_string(),
        mode: 0o755,
        size: 0,
        mtime_ns: FIXED_MTIME as i64 * 1_000_000_000,
        entry: None,
    }
}

fn node(index: usize, entry: &ContextEntry) -> Result<Node> {
    let path = entry.path.clone();
    let source = match &entry.source {
        ContextSource::Bytes(bytes) => {
            let digest = Sha256::digest(bytes);
            let nanos =
                u64::from_be_bytes(digest[..8].try_into().unwrap_or_default()) % 1_000_000_000;
            return Ok(Node {
                path,
                mode: 0o644,
                size: bytes.len() as u64,
                mtime_ns: FIXED_MTIME as i64 * 1_000_000_000 + nanos as i64,
                entry: Some(index),
            });
        }
        ContextSource::File(source) => source,
    };
    let meta = std::fs::metadata(source).map_err(|e| Error::io(source, e))?;
    if !meta.is_file() {
        return Err(Error::invalid(format!(
            "context entry `{path}` comes from {}, which is not a regular file",
            source.display()
        )));
    }
    let mtime_ns = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(FIXED_MTIME as i64 * 1_000_000_000, |d| {
            i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
        });
    Ok(Node {
        path,
        mode: file_mode(&meta),
        size: meta.len(),
        mtime_ns,
        entry: Some(index),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(path: &str, data: &[u8]) -> ContextEntry {
        ContextEntry {
            path: path.into(),
            source: ContextSource::Bytes(data.to_vec()),
        }
    }

    fn all(dockerfile: &str, entries: Vec<ContextEntry>) -> Vec<Node> {
        let tree = Tree::new(dockerfile, entries).expect("tree");
        let nodes = tree.walk(&Everything).collect::<Result<Vec<_>>>();
        nodes.expect("walk")
    }

    #[test]
    fn folders_come_before_what_they_hold_and_names_sort_by_component() {
        let entries = vec![
            bytes("a.b", b"1"),
            bytes("a/z", b"2"),
            bytes("a/b/c", b"3"),
            bytes("B", b"4"),
        ];
        let nodes = all("FROM scratch\n", entries);
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(
            paths,
            [DOCKERFILE_NAME, "B", "a", "a/b", "a/b/c", "a/z", "a.b"]
        );
        assert!(nodes[2].entry.is_none());
    }

    #[test]
    fn a_later_entry_of_one_path_replaces_the_earlier() {
        let tree = Tree::new("x", vec![bytes("f", b"old"), bytes("f", b"new!")]).expect("tree");
        let nodes: Vec<Node> = tree.walk(&Everything).map(|n| n.expect("node")).collect();
        assert_eq!(nodes.len(), 2);
        let entry = tree.entry(nodes[1].entry.expect("a file"));
        assert_eq!(
            entry.map(|e| &e.source),
            Some(&ContextSource::Bytes(b"new!".to_vec()))
        );
        assert_eq!(nodes[1].size, 4);
    }

    #[test]
    fn generated_bytes_of_one_size_get_different_mtimes() {
        let one = all("x", vec![bytes("f", b"aaaa")]);
        let two = all("x", vec![bytes("f", b"bbbb")]);
        let again = all("x", vec![bytes("f", b"aaaa")]);
        assert_ne!(one[1].mtime_ns, two[1].mtime_ns);
        assert_eq!(one[1].mtime_ns, again[1].mtime_ns);
        assert_eq!(one[1].mtime_ns / 1_000_000_000, FIXED_MTIME as i64);
    }

    #[test]
    fn a_path_that_is_file_and_folder_or_reserved_is_refused() {
        assert!(Tree::new("x", vec![bytes("a", b"1"), bytes("a/b", b"2")]).is_err());
        assert!(Tree::new("x", vec![bytes("a/b", b"2"), bytes("a", b"1")]).is_err());
        assert!(Tree::new("x", vec![bytes("a/b/c", b"2"), bytes("a/b", b"1")]).is_err());
        assert!(Tree::new("x", vec![bytes(DOCKERFILE_NAME, b"1")]).is_err());
        assert!(Tree::new("x", vec![bytes("../x", b"1")]).is_err());
        assert!(Tree::new("x", vec![bytes("a", b"1"), bytes("a.b/c", b"2")]).is_ok());
    }

    /// Only what is under `keep` (a folder), and the folders above it.
    struct Under(&'static str);

    impl Select for Under {
        fn wants(&self, path: &str) -> bool {
            is_under(path, self.0)
        }

        fn may_want_under(&self, folder: &str) -> bool {
            folder == self.0 || is_under(folder, self.0) || is_under(self.0, folder)
        }
    }

    #[test]
    fn a_walk_looks_only_at_the_files_it_sends() {
        let dir = tempfile::tempdir().expect("tempdir");
        let present = dir.path().join("present");
        std::fs::write(&present, b"12345").expect("write");
        let file = |path: &str, source: &std::path::Path| ContextEntry {
            path: path.into(),
            source: ContextSource::File(source.to_path_buf()),
        };
        let entries = vec![
            file("a/gone", &dir.path().join("missing")),
            file("b/c/kept", &present),
            file("b/d/gone", &dir.path().join("missing")),
            file("b/c/x/kept", &present),
        ];
        let tree = Tree::new("x", entries).expect("tree");
        let nodes = tree.walk(&Under("b/c")).collect::<Result<Vec<_>>>();
        let nodes = nodes.expect("the missing files are under folders the walk skips");
        let paths: Vec<&str> = nodes.iter().map(|n| n.path.as_str()).collect();
        assert_eq!(paths, ["b", "b/c", "b/c/kept", "b/c/x", "b/c/x/kept"]);
        assert_eq!(nodes[2].size, 5);
        let err = tree
            .walk(&Everything)
            .find_map(|n| n.err())
            .expect("a missing file the walk sends is an error");
        assert!(err.message().contains("missing"), "{err}");
    }
}
