"""The 1 GiB source tree the `hash` and `memory` benchmarks read: made once, kept under /var/tmp/berth-bench.

Four quarters q0..q3 of exactly 256 MiB each, so `q0` is a 256 MiB tree, `q0 q1` 512 MiB and the whole tree
1 GiB. Each quarter: 10,000 small files (512 B to 16 KiB, one in ten plain text, the rest random bytes) in 200
folders, 200 medium files (64 KiB to 1 MiB, random) and one large random file holding the rest (about 64 MiB).
The random bytes are AES-128-CTR of zeros under a fixed key (`openssl enc`), so the tree is the same on every
machine and incompressible; sizes come from a seeded PRNG.
"""

import os
import random
import shutil
import subprocess

from common import CACHE

RECIPE = "v1"
QUARTER = 256 * 2**20
SMALL, MEDIUM = 10_000, 200


def tree_path():
    return CACHE / f"tree-{RECIPE}"


def file_count():
    return 4 * (SMALL + MEDIUM + 1)


def ensure_tree():
    """The tree's path, generating it first if it is missing or incomplete."""
    root = tree_path()
    marker = CACHE / f"tree-{RECIPE}.complete"  # outside the tree: it must not be hashed
    if marker.exists():
        return root
    print(f"generating the 1 GiB tree in {root} (once) ...", flush=True)
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    rng = random.Random(20261128)
    stream = subprocess.Popen(["openssl", "enc", "-aes-128-ctr", "-nosalt", "-pbkdf2", "-pass", "pass:berth-bench",
                               "-in", "/dev/zero"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)

    def random_bytes(n):
        data = stream.stdout.read(n)
        assert len(data) == n
        return data

    for q in range(4):
        quarter = root / f"q{q}"
        written = 0
        for i in range(SMALL):
            folder = quarter / f"pkg{i % 50:02}" / f"mod{i % 4}"
            folder.mkdir(parents=True, exist_ok=True)
            size = rng.randint(512, 16 * 1024)
            if i % 10 == 0:
                line = f"# quarter {q} file {i}: configuration value = {i * 7919 % 1000}\n".encode()
                data = (line * (size // len(line) + 1))[:size]
                (folder / f"notes_{i:05}.txt").write_bytes(data)
            else:
                (folder / f"module_{i:05}.py").write_bytes(random_bytes(size))
            written += size
        for i in range(MEDIUM):
            folder = quarter / "data" / f"shard{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            size = rng.randint(64 * 1024, 2**20)
            (folder / f"part_{i:04}.bin").write_bytes(random_bytes(size))
            written += size
        rest = QUARTER - written
        assert rest > 0
        with open(quarter / "model.bin", "wb") as f:
            while rest:
                chunk = min(rest, 8 * 2**20)
                f.write(random_bytes(chunk))
                rest -= chunk
    stream.kill()
    stream.wait()
    subprocess.run(["sync"], check=True)
    marker.write_text(RECIPE + "\n")
    return root


def tree_bytes(paths):
    total = 0
    for p in paths:
        for dirpath, _, files in os.walk(p):
            total += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    return total


if __name__ == "__main__":
    print(ensure_tree(), tree_bytes([tree_path()]) / 2**20, "MiB")
