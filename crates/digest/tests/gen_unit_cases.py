# Prints, as Rust constants, what flytekit 1.16 / docker-py / CPython answer for the
# cases used by the unit tests in src/glob_tests.rs and src/dockerignore_tests.rs.
# Run with flytekit's interpreter:  /opt/flytekit-venv/bin/python gen_unit_cases.py
import fnmatch
import os
import tempfile

from docker.utils import fnmatch as dfn
from flytekit.tools.ignore import DockerIgnore

PY = [
    ("a/b.pyc", "*.pyc"), (".cache", ".cache"), ("x/.cache", ".cache"), (".cache/a/b", ".cache/*"),
    ("__pycache__/x.pyc", "__pycache__/*"), ("a/__pycache__/x", "**/__pycache__/*"),
    ("__pycache__/x", "**/__pycache__/*"), ("A.PYC", "*.pyc"), ("a\nb", "a?b"), ("abc", "[]a]bc"),
    ("]bc", "[]a]bc"), ("b", "[!]a]"), ("]", "[!]]"), ("-", "[a-]"), ("x", "[z-a]"), ("x", "[!z-a]"),
    ("!", "[z-a!]"), ("q", "[z-a!]"), ("c", "[a-c-e]"), ("-", "[a-c-e]"), ("d", "[a-c-e]"),
    ("[", "["), ("[x", "[x"), ("\\", "[\\]"), ("&", "[&&]"), ("^", "[^]"), ("a", "[^a]"),
    ("ab", "a*b*"), ("x/y", "x*y"), ("\u00e9.txt", "?.txt"), ("\u00e9", "[\u00e0-\u00ea]"),
]
DOCKER = [
    ("a/b", "*"), ("a", "*"), ("a/b/c.py", "**/*.py"), ("c.py", "**/*.py"), ("a/b", "a/**"),
    ("a/", "a/**"), ("a", "a/**"), ("a/b/c", "**"), ("a\n", "a"), ("a\nb", "a?b"), ("ab/c", "a?/c"),
    ("x/y", "x?y"), ("b", "[!a]"), ("]", "[]]"), ("-", "[a-]"), ("\\", "[\\]"), ("^", "[^]"),
    ("a", "[^a]"), ("a\nb/c", "**/c"), ("q/a\nb/c", "q/**/c"), ("[", "["), ("ab", "a**b"),
    ("a/x/b", "a**b"), ("a/x/b", "a/**/b"), ("a/b", "a/**/b"),
]
# (.dockerignore text, relative path)
IGNORE = [
    ("*.md\n!README.md\n", "README.md"), ("*.md\n!README.md\n", "x.md"), ("*.md\n!README.md\n", "docs/x.md"),
    ("**/*.log\n", "a/b/c.log"), ("**/*.log\n", "c.log"), ("build\n", "build/x/y.o"), ("build/\n", "build/x"),
    ("build\n", "builder/x"), ("docs/*\n", "docs/a/b"), ("docs/*.md\n", "docs/sub/x.md"), ("*.MD\n", "readme.md"),
    ("Build\n", "build/x"), ("build\n", "BUILD/x"), ("foo/../bar\n", "bar"), ("../secret\n", "secret"),
    ("a/b/../../c\n", "c"), ("#foo\n", "#foo"), (" #foo\n", "#foo"), ("# c\nfoo\n", "foo"),
    (".*\n", ".dockerignore"), (".*\n", ".env"), ("*\n", ".dockerignore"), ("*\n", "x/.dockerignore"),
    ("!keep\n*\n", "keep"), ("*\n!keep\n", "keep"), ("  *.tmp  \n", "x.tmp"), ("a\r\nb\rc\n", "b"),
    ("a\r\nb\rc\n", "c"), (".\n", "x"), ("/\n", "x"), ("!\n", "x"), ("/abs/path\n", "abs/path"),
    ("dir/**\n", "dir/a/b"), ("dir/**\n", "dir"), ("a?c\n", "a/c"), ("docs\n!docs/keep.md\n", "docs/keep.md"),
    ("docs\n!docs/keep.md\n", "docs/other"), ("./src/*.py\n", "src/x.py"), ("\n\n*.o\n\n", "a.o"),
    ("**\n!src\n", "src/main.py"), ("**\n!src/*.py\n", "src/a/b.py"), ("*/tmp\n", "a/tmp/x"),
    ("*/tmp\n", "tmp/x"), ("\u00c9t\u00e9\n", "\u00e9t\u00e9/x"), ("! keep\nkeep\n", "keep"), ("keep\n! keep\n", "keep"),
]


def rs(s):
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n").replace("\r", "\\r") + '"'


print("const PY_CASES: &[(&str, &str, bool)] = &[")
for name, pat in PY:
    print(f"    ({rs(name)}, {rs(pat)}, {str(fnmatch.fnmatchcase(name, pat)).lower()}),")
print("];")
print("const DOCKER_CASES: &[(&str, &str, bool)] = &[")
for name, pat in DOCKER:
    print(f"    ({rs(name)}, {rs(pat)}, {str(dfn.fnmatchcase(name, pat)).lower()}),")
print("];")
print("const IGNORE_CASES: &[(&str, &str, bool)] = &[")
for text, path in IGNORE:
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, ".dockerignore"), "w", newline="") as f:
            f.write(text)
        got = DockerIgnore(d).is_ignored(path)
    print(f"    ({rs(text)}, {rs(path)}, {str(got).lower()}),")
print("];")
