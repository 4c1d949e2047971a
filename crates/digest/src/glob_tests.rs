//! Expected values were produced by CPython 3.11's `fnmatch.fnmatchcase` and
//! docker-py's `docker.utils.fnmatch.fnmatchcase`, printed by
//! `crates/digest/tests/gen_unit_cases.py` (run with flytekit's Python).

use super::*;

const PY_CASES: &[(&str, &str, bool)] = &[
    ("a/b.pyc", "*.pyc", true),
    (".cache", ".cache", true),
    ("x/.cache", ".cache", false),
    (".cache/a/b", ".cache/*", true),
    ("__pycache__/x.pyc", "__pycache__/*", true),
    ("a/__pycache__/x", "**/__pycache__/*", true),
    ("__pycache__/x", "**/__pycache__/*", false),
    ("A.PYC", "*.pyc", false),
    ("a\nb", "a?b", true),
    ("abc", "[]a]bc", true),
    ("]bc", "[]a]bc", true),
    ("b", "[!]a]", true),
    ("]", "[!]]", false),
    ("-", "[a-]", true),
    ("x", "[z-a]", false),
    ("x", "[!z-a]", true),
    ("!", "[z-a!]", true),
    ("q", "[z-a!]", true),
    ("c", "[a-c-e]", true),
    ("-", "[a-c-e]", true),
    ("d", "[a-c-e]", false),
    ("[", "[", true),
    ("[x", "[x", true),
    ("\\", "[\\]", true),
    ("&", "[&&]", true),
    ("^", "[^]", true),
    ("a", "[^a]", true),
    ("ab", "a*b*", true),
    ("x/y", "x*y", true),
    ("é.txt", "?.txt", true),
    ("é", "[à-ê]", true),
];

const DOCKER_CASES: &[(&str, &str, bool)] = &[
    ("a/b", "*", false),
    ("a", "*", true),
    ("a/b/c.py", "**/*.py", true),
    ("c.py", "**/*.py", true),
    ("a/b", "a/**", true),
    ("a/", "a/**", true),
    ("a", "a/**", false),
    ("a/b/c", "**", true),
    ("a\n", "a", true),
    ("a\nb", "a?b", true),
    ("ab/c", "a?/c", true),
    ("x/y", "x?y", false),
    ("b", "[!a]", true),
    ("]", "[]]", true),
    ("-", "[a-]", true),
    ("\\", "[\\]", true),
    ("^", "[^]", true),
    ("a", "[^a]", true),
    ("a\nb/c", "**/c", false),
    ("q/a\nb/c", "q/**/c", false),
    ("[", "[", true),
    ("ab", "a**b", true),
    ("a/x/b", "a**b", true),
    ("a/x/b", "a/**/b", true),
    ("a/b", "a/**/b", true),
];

#[test]
fn python_fnmatch_matches_cpython() {
    for &(name, pat, want) in PY_CASES {
        assert_eq!(
            PyFnmatch::new(pat).matches(name),
            want,
            "fnmatch({name:?}, {pat:?})"
        );
    }
}

#[test]
fn docker_fnmatch_matches_docker_py() {
    for &(name, pat, want) in DOCKER_CASES {
        let glob = DockerGlob::new(pat).unwrap_or_else(|e| panic!("{pat:?}: {e}"));
        assert_eq!(
            glob.matches(name),
            want,
            "docker fnmatch({name:?}, {pat:?})"
        );
    }
}

#[test]
fn docker_reversed_range_is_an_error_like_python_re() {
    let err = DockerGlob::new("[z-a]").err().unwrap_or_default();
    assert!(err.contains("bad character range"), "{err}");
}

#[test]
fn python_strip_uses_python_whitespace() {
    assert_eq!(python_strip(" \t\x1c*.pyc\u{a0}\u{3000}\n"), "*.pyc");
    assert_eq!(python_strip("\u{feff}x"), "\u{feff}x");
    assert_eq!(python_strip("  "), "");
}
