"""Expected digests for tests/compat.rs, computed by flytekit itself.

Run with flytekit's interpreter (flytekit 1.16):

    /opt/flytekit-venv/bin/python crates/digest/tests/gen_expected.py

It builds every tree of tests/trees.json in a temporary directory exactly as
compat.rs does and prints the Rust constants to paste into compat.rs.

compat.rs also calls it at test time when FLYTEKIT_PYTHON is set:

    gen_expected.py source ROOT            -> source_root digest of ROOT
    gen_expected.py copy PATH...           -> copy digest of the paths
"""

import hashlib
import json
import os
import socket
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def source_digest(root):
    from flytekit.constants import CopyFileDetection
    from flytekit.tools.ignore import DockerIgnore, GitIgnore, IgnoreGroup, StandardIgnore
    from flytekit.tools.script_mode import ls_files

    # Exactly what ImageSpec.tag does for source_root with copy mode ALL.
    ignore = IgnoreGroup(root, [GitIgnore, DockerIgnore, StandardIgnore])
    _, digest = ls_files(str(root), CopyFileDetection.ALL, deref_symlinks=False, ignore_group=ignore)
    return digest


def copy_digest(paths):
    from flytekit.tools.fast_registration import compute_digest

    return compute_digest(list(paths), None)


def build(tree, root):
    """Creates `tree` (an entry of trees.json) under the existing dir `root`."""
    sockets = []
    for e in tree["entries"]:
        path = os.path.join(root, e["path"])
        os.makedirs(os.path.dirname(path), exist_ok=True)
        if "text" in e:
            with open(path, "wb") as f:
                f.write(e["text"].encode("utf-8"))
        elif "repeat" in e:
            with open(path, "wb") as f:
                f.write(e["repeat"].encode("utf-8") * e["times"])
        elif "symlink" in e:
            os.symlink(e["symlink"], path)
        elif e.get("socket"):
            s = socket.socket(socket.AF_UNIX)
            s.bind(path)
            sockets.append(s)
        elif e.get("dir"):
            os.makedirs(path, exist_ok=True)
    if tree.get("git"):
        subprocess.run(["git", "init", "-q"], cwd=root, check=True)
        for p in tree.get("git_add", []):
            subprocess.run(["git", "add", "-f", p], cwd=root, check=True)
    for s in sockets:
        s.close()


def main():
    if len(sys.argv) > 2 and sys.argv[1] == "source":
        print(source_digest(sys.argv[2]))
        return
    if len(sys.argv) > 1 and sys.argv[1] == "copy":
        print(copy_digest(sys.argv[2:]))
        return
    with open(os.path.join(HERE, "trees.json")) as f:
        spec = json.load(f)
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        roots = {}
        for name, tree in spec["trees"].items():
            root = os.path.join(tmp, name)
            os.mkdir(root)
            build(tree, root)
            roots[name] = root
        for name, tree in spec["trees"].items():
            root = os.path.join(roots[name], tree.get("digest_root", ""))
            out.append((f"source/{name}", source_digest(root.rstrip("/"))))
        for name, c in spec["copies"].items():
            paths = [os.path.join(roots[c["tree"]], p) for p in c["paths"]]
            out.append((f"copy/{name}", copy_digest(paths)))
    print("const EXPECTED: &[(&str, &str)] = &[")
    for key, digest in out:
        print(f'    ("{key}", "{digest}"),')
    print("];")


if __name__ == "__main__":
    main()
