//! Expected values were produced by flytekit 1.16's `DockerIgnore(root).is_ignored(path)`
//! on a `.dockerignore` with the given text, printed by
//! `crates/digest/tests/gen_unit_cases.py` (run with flytekit's Python).

use super::*;

const IGNORE_CASES: &[(&str, &str, bool)] = &[
    ("*.md\n!README.md\n", "README.md", false),
    ("*.md\n!README.md\n", "x.md", true),
    ("*.md\n!README.md\n", "docs/x.md", false),
    ("**/*.log\n", "a/b/c.log", true),
    ("**/*.log\n", "c.log", true),
    ("build\n", "build/x/y.o", true),
    ("build/\n", "build/x", true),
    ("build\n", "builder/x", false),
    ("docs/*\n", "docs/a/b", true),
    ("docs/*.md\n", "docs/sub/x.md", false),
    ("*.MD\n", "readme.md", true),
    ("Build\n", "build/x", true),
    ("build\n", "BUILD/x", true),
    ("foo/../bar\n", "bar", true),
    ("../secret\n", "secret", true),
    ("a/b/../../c\n", "c", true),
    ("#foo\n", "#foo", false),
    (" #foo\n", "#foo", true),
    ("# c\nfoo\n", "foo", true),
    (".*\n", ".dockerignore", false),
    (".*\n", ".env", true),
    ("*\n", ".dockerignore", false),
    ("*\n", "x/.dockerignore", true),
    ("!keep\n*\n", "keep", true),
    ("*\n!keep\n", "keep", false),
    ("  *.tmp  \n", "x.tmp", true),
    ("a\r\nb\rc\n", "b", true),
    ("a\r\nb\rc\n", "c", true),
    (".\n", "x", false),
    ("/\n", "x", false),
    ("!\n", "x", false),
    ("/abs/path\n", "abs/path", true),
    ("dir/**\n", "dir/a/b", true),
    ("dir/**\n", "dir", false),
    ("a?c\n", "a/c", false),
    ("docs\n!docs/keep.md\n", "docs/keep.md", false),
    ("docs\n!docs/keep.md\n", "docs/other", true),
    ("./src/*.py\n", "src/x.py", true),
    ("\n\n*.o\n\n", "a.o", true),
    ("**\n!src\n", "src/main.py", false),
    ("**\n!src/*.py\n", "src/a/b.py", true),
    ("*/tmp\n", "a/tmp/x", true),
    ("*/tmp\n", "tmp/x", false),
    ("Été\n", "été/x", true),
    ("! keep\nkeep\n", "keep", true),
    ("keep\n! keep\n", "keep", false),
];

#[test]
fn dockerignore_matches_flytekit() {
    for &(text, path, want) in IGNORE_CASES {
        let di = DockerIgnore::parse(text, PathBuf::from(".dockerignore"));
        let got = di.matches(path).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(got, want, ".dockerignore {text:?} on {path:?}");
    }
}

#[test]
fn invalid_range_is_reported_on_use_with_the_line() {
    let di = DockerIgnore::parse("ok\n[z-a]\n", PathBuf::from("/r/.dockerignore"));
    let err = di
        .matches("x")
        .err()
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        err.contains("[z-a]") && err.contains("/r/.dockerignore"),
        "{err}"
    );
}

#[test]
fn leading_parts_cuts_at_slashes() {
    assert_eq!(leading_parts("a/b/c", 1), "a");
    assert_eq!(leading_parts("a/b/c", 2), "a/b");
    assert_eq!(leading_parts("a/b/c", 3), "a/b/c");
    assert_eq!(leading_parts("a", 1), "a");
}

#[test]
fn empty_file_has_only_the_implicit_pattern() {
    let di = DockerIgnore::parse("# only a comment\n\n", PathBuf::new());
    assert!(di.is_empty());
    assert!(!DockerIgnore::parse("x\n", PathBuf::new()).is_empty());
}
