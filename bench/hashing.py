"""`hash`: naming a spec whose tag hashes a 1 GiB tree (source_root or copy), berth against flytekit, cold and warm,
next to the disk's own read speed."""

import os
import tempfile
from pathlib import Path

from common import (CACHE, REPO, berth_binary, drop_caches, flytekit_python, fmt, machine_line, md_table, measure,
                    median)
from tree import ensure_tree, file_count, tree_bytes

FLYTEKIT_TAG = """
import sys, time
sys.path.insert(0, sys.argv[1])
import flytekit, tags
start = time.perf_counter()
name = tags.load_spec(sys.argv[2]).image_name()
print(time.perf_counter() - start, name)
"""


def write_specs(tree):
    """Two specs beside the tree (paths in a spec must stay inside its folder): one hashing it as source_root,
    one as a `copy:` entry."""
    rel = tree.name
    specs = {
        "source_root": ("hash-source-root.yaml", f"source_root: {rel}\nsource_copy_mode: 2\n"),
        "copy": ("hash-copy.yaml", f"copy: [{rel}]\n"),
    }
    paths = {}
    for kind, (file, extra) in specs.items():
        path = CACHE / file
        path.write_text(f"name: bench-hash\nregistry: 127.0.0.1:5000/bench\npython_version: \"3.11\"\n"
                        f"packages: [numpy]\n{extra}")
        paths[kind] = path
    return paths


def disk_read(tree, runs):
    """What the machine can do with the tree: read every file in path order (`cat`, one reader, as flytekit
    reads), with 8 readers (`xargs -P 8`), one large file (`dd`), each right after dropping the page cache; and
    one MD5 over all of it from the page cache (`cat | md5sum`: the CPU's ceiling for a tag, which is one MD5
    stream in path order). Returns rows of (label, median seconds, bytes)."""
    files = sorted(str(p) for p in Path(tree).rglob("*") if p.is_file())
    list_file = CACHE / "tree-files.txt"
    list_file.write_text("\0".join(files) + "\0")
    size = tree_bytes([tree])
    big = tree / "q0" / "model.bin"
    cold = [
        (f"`cat` of all {len(files)} files in path order, one reader, cold",
         ["sh", "-c", f"xargs -0 cat < {list_file} > /dev/null"], size),
        ("the same with 8 readers (`xargs -0 -P 8 -n 256 cat`), cold",
         ["sh", "-c", f"xargs -0 -P 8 -n 256 cat < {list_file} > /dev/null"], size),
        (f"`dd bs=1M` of one {os.path.getsize(big) / 2**20:.0f} MiB file, cold",
         ["dd", f"if={big}", "of=/dev/null", "bs=1M"], os.path.getsize(big)),
    ]
    times = {label: [] for label, _, _ in cold}
    for _ in range(runs):
        for label, cmd, _ in cold:
            drop_caches()
            times[label].append(measure(cmd)[0])
    md5_label = "`cat` of all files `| md5sum`, page cache warm (one MD5 stream: the CPU's ceiling)"
    md5_cmd = ["sh", "-c", f"xargs -0 cat < {list_file} | md5sum > /dev/null"]
    measure(md5_cmd)
    times[md5_label] = [measure(md5_cmd)[0] for _ in range(runs)]
    sizes = {label: n for label, _, n in cold}
    sizes[md5_label] = size
    return [(label, median(t), sizes[label]) for label, t in times.items()]


def bench_hash(args):
    berth = berth_binary()
    py = flytekit_python()
    tree = ensure_tree()
    size = tree_bytes([tree])
    mib = size / 2**20
    specs = write_specs(tree)
    tags_dir = REPO / "scripts/flytekit-corpus"
    with tempfile.TemporaryDirectory(dir=CACHE) as tmp:
        tmp = Path(tmp)
        counter = iter(range(10**6))

        def fresh_cache():
            return str(tmp / f"cache-{next(counter)}")

        warm_cache = str(tmp / "warm-cache")

        def berth_run(spec, cache, cold):
            if cold:
                drop_caches()
            env = dict(os.environ, BERTH_CACHE_DIR=cache)
            secs, rss, out = measure([berth, "name", spec.name], cwd=spec.parent, env=env)
            return secs, rss, out.strip()

        def flytekit_run(spec, cold):
            if cold:
                drop_caches()
            secs, rss, out = measure([py, "-c", FLYTEKIT_TAG, tags_dir, spec], cwd=spec.parent)
            inner, name = out.split()
            return secs, rss, name, float(inner)

        print(machine_line())
        print(f"tree: {tree} ({mib:.0f} MiB in {file_count()} files: 40,000 of 0.5-16 KiB, 800 of 64 KiB-1 MiB, "
              f"4 of ~64 MiB; random bytes except one small file in ten)")
        print("cold runs: `sync; echo 3 > /proc/sys/vm/drop_caches` (as root) right before each, and for berth an "
              "empty BERTH_CACHE_DIR")
        reads = disk_read(tree, args.disk_runs)
        print(f"\n**What the disk and CPU allow ({args.disk_runs} runs each, medians)**\n")
        print(md_table(["read", "median s", "MiB/s"],
                       [(label, fmt(s), f"{n / 2**20 / s:.0f}") for label, s, n in reads]))
        cat_s, par_s, md5_s = reads[0][1], reads[1][1], reads[3][1]

        for kind in args.kinds:
            spec = specs[kind]
            # Same answer first.
            ours = berth_run(spec, fresh_cache(), cold=False)[2]
            theirs = flytekit_run(spec, cold=False)[2]
            if ours != theirs:
                raise SystemExit(f"berth ({ours}) and flytekit ({theirs}) disagree on {spec}; fix that first")
            rows = {k: ([], []) for k in ("berth_cold", "fk_cold", "berth_nodigest", "fk_warm", "berth_warm")}
            fk_inner = {"fk_cold": [], "fk_warm": []}
            berth_run(spec, warm_cache, cold=False)  # fills the digest cache that the warm rows keep

            def record(key, result):
                rows[key][0].append(result[0])
                rows[key][1].append(result[1])
                if key in fk_inner:
                    fk_inner[key].append(result[3])

            for i in range(args.runs):
                pair = [("berth_cold", lambda: berth_run(spec, fresh_cache(), cold=True)),
                        ("fk_cold", lambda: flytekit_run(spec, cold=True))]
                for key, fn in (pair if i % 2 == 0 else pair[::-1]):
                    record(key, fn())
            for i in range(args.runs):
                trio = [("berth_nodigest", lambda: berth_run(spec, fresh_cache(), cold=False)),
                        ("fk_warm", lambda: flytekit_run(spec, cold=False)),
                        ("berth_warm", lambda: berth_run(spec, warm_cache, cold=False))]
                for key, fn in trio[i % 3:] + trio[:i % 3]:
                    record(key, fn())
            base = median(rows["berth_cold"][0])
            labels = {
                "berth_cold": "`berth name`, cold (page cache dropped, empty digest cache)",
                "fk_cold": "flytekit `ImageSpec.image_name()`, cold (page cache dropped), fresh process",
                "berth_nodigest": "`berth name`, page cache warm, empty digest cache",
                "fk_warm": "flytekit, page cache warm, fresh process",
                "berth_warm": "`berth name`, warm (unchanged tree, digest cache kept)",
            }
            table = []
            for key, label in labels.items():
                secs, rss = rows[key]
                m = median(secs)
                table.append((label, fmt(m), f"{mib / m:.0f}", fmt(max(rss), 1), f"{m / base:.2f}x"))
                if key in fk_inner:
                    mi = median(fk_inner[key])
                    table.append(("  of which hashing, after `import flytekit`", fmt(mi), f"{mib / mi:.0f}", "-",
                                  f"{mi / base:.2f}x"))
            print(f"\n**Naming a spec whose tree is its `{kind}` ({mib:.0f} MiB; {args.runs} runs per row, "
                  f"alternating; names checked equal first)**\n")
            print(md_table(["tool", "median s", "MiB/s", "peak RSS MiB", "vs berth cold"], table))
            nodigest = median(rows["berth_nodigest"][0])
            print(f"\nBound: cold `berth name` hashed at {mib / base:.0f} MiB/s, where the disk gives "
                  f"{mib / cat_s:.0f} MiB/s to one reader and {mib / par_s:.0f} MiB/s to 8 "
                  f"({base / par_s * 100 - 100:+.0f}% time vs 8 readers); from the page cache it hashed at "
                  f"{mib / nodigest:.0f} MiB/s, where one MD5 stream over the same bytes runs at "
                  f"{mib / md5_s:.0f} MiB/s ({nodigest / md5_s * 100 - 100:+.0f}% time).")
