//! Compatibility with flytekit 1.16 on the trees of `trees.json`.
//!
//! `EXPECTED` was printed by `gen_expected.py` (run it with flytekit's
//! Python to regenerate). When the `FLYTEKIT_PYTHON` environment variable
//! names a Python with flytekit installed, every digest is also compared
//! with flytekit's answer on the very same tree, which additionally covers
//! the copy walk over several subdirectories, whose order depends on the
//! filesystem's `readdir` order.

use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use berth_digest::{copy_digest, copy_files, list_source_files, DigestCache};
use serde_json::Value;

const EXPECTED: &[(&str, &str)] = &[
    ("source/mixed", "ffceb7cbe0bb936a43b4fc4784261147"),
    ("source/nogit", "1162b41682bbb8780929f78f4bd54503"),
    ("source/subdir_of_repo", "6a072d7c112e011a95029397b2f11db3"),
    ("source/empty", "d41d8cd98f00b204e9800998ecf8427e"),
    ("source/copysrc", "6998c605a7b2b5455751cd2d909f8a82"),
    ("source/copyorder", "d82b44fb6af861c8f75e33ff32e53e95"),
    ("copy/copy_list", "89d0a0bb2711c1647e23579b9c4b84e2"),
    ("copy/copy_single_file", "47a0591738f92f90a3119737a38dd240"),
    ("copy/copy_empty_list", "d41d8cd98f00b204e9800998ecf8427e"),
];

fn spec() -> Value {
    let text = include_str!("trees.json");
    serde_json::from_str(text).unwrap_or_else(|e| panic!("trees.json: {e}"))
}

fn expected(key: &str) -> &'static str {
    EXPECTED
        .iter()
        .find(|(k, _)| *k == key)
        .map(|(_, v)| *v)
        .unwrap_or_else(|| panic!("no expected value for {key}"))
}

fn must<T, E: std::fmt::Display>(r: Result<T, E>, what: &str) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn run(cmd: &mut Command) {
    let status = must(cmd.status(), "spawn");
    assert!(status.success(), "{cmd:?} failed");
}

/// Builds `tree` under `root` exactly like `gen_expected.py`'s `build`.
fn build(tree: &Value, root: &Path) {
    let entries = tree["entries"].as_array().cloned().unwrap_or_default();
    for e in &entries {
        let path = root.join(e["path"].as_str().unwrap_or_default());
        if let Some(parent) = path.parent() {
            must(std::fs::create_dir_all(parent), "mkdir");
        }
        if let Some(text) = e["text"].as_str() {
            must(std::fs::write(&path, text), "write");
        } else if let Some(unit) = e["repeat"].as_str() {
            let times = e["times"].as_u64().unwrap_or(0) as usize;
            must(std::fs::write(&path, unit.repeat(times)), "write");
        } else if let Some(target) = e["symlink"].as_str() {
            must(std::os::unix::fs::symlink(target, &path), "symlink");
        } else if e["socket"].as_bool() == Some(true) {
            // The socket file stays after the listener is dropped.
            drop(must(UnixListener::bind(&path), "bind"));
        } else if e["dir"].as_bool() == Some(true) {
            must(std::fs::create_dir_all(&path), "mkdir");
        }
    }
    if tree["git"].as_bool() == Some(true) {
        run(Command::new("git").args(["init", "-q"]).current_dir(root));
        for p in tree["git_add"].as_array().cloned().unwrap_or_default() {
            let p = p.as_str().unwrap_or_default().to_owned();
            run(Command::new("git")
                .args(["add", "-f", &p])
                .current_dir(root));
        }
    }
}

/// All trees, built in one temporary directory.
fn build_all() -> (tempfile::TempDir, Value) {
    let spec = spec();
    let tmp = must(tempfile::tempdir(), "tempdir");
    for (name, tree) in spec["trees"].as_object().cloned().unwrap_or_default() {
        let root = tmp.path().join(&name);
        must(std::fs::create_dir(&root), "mkdir");
        build(&tree, &root);
    }
    (tmp, spec)
}

/// Where the source digest of tree `name` is taken.
fn digest_root(tmp: &Path, name: &str, tree: &Value) -> PathBuf {
    let root = tmp.join(name);
    match tree["digest_root"].as_str() {
        Some(sub) => root.join(sub),
        None => root,
    }
}

fn copy_paths(tmp: &Path, copy: &Value) -> Vec<PathBuf> {
    let root = tmp.join(copy["tree"].as_str().unwrap_or_default());
    copy["paths"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|p| root.join(p.as_str().unwrap_or_default()))
        .collect()
}

/// flytekit's answer at test time, if `FLYTEKIT_PYTHON` is set.
fn flytekit(args: &[&str]) -> Option<String> {
    let python = std::env::var_os("FLYTEKIT_PYTHON")?;
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/gen_expected.py");
    let out = must(
        Command::new(python).arg(script).args(args).output(),
        "python",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

#[test]
fn source_digests_match_flytekit() {
    let (tmp, spec) = build_all();
    for (name, tree) in spec["trees"].as_object().cloned().unwrap_or_default() {
        let root = digest_root(tmp.path(), &name, &tree);
        let tree = must(list_source_files(&root), "list");
        let got = must(tree.digest(None), "digest");
        assert_eq!(
            got,
            expected(&format!("source/{name}")),
            "source digest of {name}"
        );
        if let Some(live) = flytekit(&["source", &root.to_string_lossy()]) {
            assert_eq!(got, live, "source digest of {name} vs live flytekit");
        }
    }
}

#[test]
fn mixed_tree_lists_what_flytekit_lists() {
    let (tmp, _) = build_all();
    let tree = must(list_source_files(&tmp.path().join("mixed")), "list");
    let names: Vec<&str> = tree.files().iter().map(|f| f.relative.as_str()).collect();
    // As printed by flytekit's ls_files on the same tree.
    let want = [
        ".dockerignore",
        ".gitignore",
        "A",
        "_",
        "a-b",
        "a.b",
        "a/b",
        "a/c/d",
        "a0",
        "big.bin",
        "docs/README.md",
        "docs/notes.txt",
        "empty.txt",
        "keep.tmp",
        "link-to-file",
        "pkg/.cache",
        "pkg/__init__.py",
        "pkg/generated.py",
        "pkg/mod.py",
        "tracked.log",
        "unicod\u{e9}.txt",
        "with space.txt",
        "\u{fc}.log",
        "\u{65e5}\u{672c}\u{8a9e}/\u{30d5}\u{30a1}\u{30a4}\u{30eb}.txt",
    ];
    assert_eq!(names, want);
    let big = tree
        .files()
        .iter()
        .find(|f| f.relative == "big.bin")
        .map(|f| f.size);
    assert_eq!(big, Some(17 * 40000));
    assert!(tree
        .files()
        .iter()
        .all(|f| f.absolute.starts_with(tree.root())));
}

#[test]
fn copy_digests_match_flytekit() {
    let (tmp, spec) = build_all();
    for (name, copy) in spec["copies"].as_object().cloned().unwrap_or_default() {
        let paths = copy_paths(tmp.path(), &copy);
        let got = must(copy_digest(&paths, None), "copy digest");
        assert_eq!(got, expected(&format!("copy/{name}")), "copy digest {name}");
        let args: Vec<String> = paths
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        let mut argv = vec!["copy"];
        argv.extend(args.iter().map(String::as_str));
        if let Some(live) = flytekit(&argv) {
            assert_eq!(got, live, "copy digest {name} vs live flytekit");
        }
    }
}

#[test]
fn copy_over_several_subdirs_follows_readdir_order() {
    let (tmp, spec) = build_all();
    for (name, copy) in spec["readdir_order_copies"]
        .as_object()
        .cloned()
        .unwrap_or_default()
    {
        let paths = copy_paths(tmp.path(), &copy);
        let got = must(copy_digest(&paths, None), "copy digest");
        let mut argv = vec!["copy".to_owned()];
        argv.extend(paths.iter().map(|p| p.to_string_lossy().into_owned()));
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        if let Some(live) = flytekit(&argv) {
            assert_eq!(got, live, "copy digest {name} vs live flytekit");
        }
        // Without flytekit: check the order is os.walk's pre-order, with
        // subdirectories in read_dir order, computed independently here.
        let listed: Vec<String> = must(copy_files(&paths), "copy files")
            .into_iter()
            .map(|f| f.relative)
            .collect();
        let mut want = Vec::new();
        for p in &paths {
            os_walk_order(p, "", &mut want);
        }
        assert_eq!(listed, want, "{name}");
    }
}

/// Reference `os.walk` top-down order for plain trees (no symlinks).
fn os_walk_order(dir: &Path, prefix: &str, out: &mut Vec<String>) {
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in must(std::fs::read_dir(dir), "read_dir") {
        let entry = must(entry, "entry");
        let name = entry.file_name().to_string_lossy().into_owned();
        if must(entry.file_type(), "file type").is_dir() {
            dirs.push(name);
        } else {
            files.push(name);
        }
    }
    files.sort();
    out.extend(files.into_iter().map(|f| format!("{prefix}{f}")));
    for d in dirs {
        os_walk_order(&dir.join(&d), &format!("{prefix}{d}/"), out);
    }
}

#[test]
fn copy_files_lists_entries_and_rejects_missing_ones() {
    let (tmp, _) = build_all();
    let root = tmp.path().join("copysrc");
    let files = must(
        copy_files(&[root.join("src"), root.join("link-to-top")]),
        "copy files",
    );
    let rel: Vec<&str> = files.iter().map(|f| f.relative.as_str()).collect();
    assert_eq!(
        rel,
        [
            "a-b.py",
            "a.py",
            "b.py",
            "x.pyc",
            "sub/z.txt",
            "sub/deeper/x",
            "sub/deeper/.git/config",
            "link-to-top"
        ]
    );
    assert_eq!(files[0].absolute, root.join("src/a-b.py"));
    assert_eq!(files[7].absolute, root.join("link-to-top"));
    assert_eq!(files[7].size, "top level file".len() as u64);
    let err = copy_files(&[root.join("missing.txt")])
        .err()
        .map(|e| e.to_string());
    assert!(err.unwrap_or_default().contains("missing.txt"));
}

#[test]
fn cache_gives_the_same_digests() {
    let (tmp, spec) = build_all();
    let cache = DigestCache::open(&tmp.path().join("cache"));
    for (name, tree) in spec["trees"].as_object().cloned().unwrap_or_default() {
        let tree = must(
            list_source_files(&digest_root(tmp.path(), &name, &tree)),
            "list",
        );
        for _ in 0..2 {
            let got = must(tree.digest(Some(&cache)), "digest");
            assert_eq!(got, expected(&format!("source/{name}")));
        }
    }
}

#[test]
fn errors_name_the_path() {
    let tmp = must(tempfile::tempdir(), "tempdir");
    let missing = tmp.path().join("nope");
    let err = list_source_files(&missing)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("nope"), "{err}");
    let file = tmp.path().join("f");
    must(std::fs::write(&file, "x"), "write");
    let err = list_source_files(&file)
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(err.contains("not a directory"), "{err}");
}
