#!/usr/bin/env python3
"""Side-by-side benchmarks of berth against the tool a user would otherwise run.

    python3 bench/bench.py name   [--runs 7] [--specs 100]   naming: berth name vs flytekit
    python3 bench/bench.py exists [--runs 5] [--specs 100]   registry checks: berth exists vs flytekit, skopeo
    python3 bench/bench.py hash   [--runs 3]                 naming a spec over a 1 GiB tree, cold and warm
    python3 bench/bench.py build  [--runs 3]                 berth build vs docker build / podman build; lxd: berth
                                                             on LXD vs on Docker and containerd, vs docker build;
                                                             lxd-remote: berth on the remote LXD vs the local one
    python3 bench/bench.py push   [--runs 3] [--torch-mb N]  berth push vs docker/podman push, skopeo copy, ctr push
    python3 bench/bench.py memory                            berth's peak RSS building 256 MiB-1 GiB contexts
    python3 bench/bench.py large  [--runs 3]                 a 1 GiB context: berth vs docker build (file sync),
                                                             podman build and podman --remote build; berth on
                                                             containerd beside docker build (--engines containerd)
    python3 bench/bench.py large-send [--runs 3] [--against B] every file of the 1 GiB context sent on Docker: berth
                                                             (and berth binary B) vs docker build, with CPU time,
                                                             each build's BuildKit records pruned after it (disk)
    python3 bench/bench.py remote [--runs 3]                 a 256 MiB context built on the local dockerd and
                                                             on the remote one over TLS (scripts/env/remote-docker.sh)
    python3 bench/bench.py remote-ssh [--runs 3]             a 256 MiB context built locally vs over SSH (Docker, Podman)
    python3 bench/bench.py scale  [--runs 5] [--images 50]   a 50-image project, all present, vs flytekit exist()
    python3 bench/bench.py pyflyte [--runs 5] [--images 20]  pyflyte package, 20 ImageSpecs present: berth plugin vs default
    python3 bench/bench.py all                               each of them once, with their defaults

All but `name` need scripts/env/up.sh's environment (dockerd, Podman, the registry, fixtures) and root (`hash`
drops the page cache). Each comparison runs the tools on the same inputs in one run on this machine, alternating
them, and prints markdown tables of medians, peak RSS (wait4's ru_maxrss of the client process) and ratios.
berth is the release binary (built here with `cargo build --release -p berth-cli`); flytekit comes from
/opt/flytekit-venv or the venv scripts/flytekit-corpus/regen.sh sets up ($FLYTEKIT_PYTHON overrides). Generated
inputs (the 1 GiB tree) are kept in /var/tmp/berth-bench ($BERTH_BENCH_CACHE). Nothing here is a test: no
thresholds, just numbers.
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import Failed  # noqa: E402

ENGINES = ["docker", "podman", "containerd"]
# `build` also has berth on LXD, side by side with berth on Docker and containerd (push and memory have no LXD rows),
# and berth on the remote LXD server of scripts/env/remote-lxd.sh beside berth on this machine's LXD
BUILD_ENGINES = ENGINES + ["lxd", "lxd-remote"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    name = sub.add_parser("name", help="berth name vs flytekit computing the same tags")
    name.add_argument("--runs", type=int, default=7)
    name.add_argument("--specs", type=int, default=100)
    exists = sub.add_parser("exists", help="berth exists vs flytekit's exist() and skopeo, half present")
    exists.add_argument("--runs", type=int, default=5)
    exists.add_argument("--specs", type=int, default=100)
    hash_ = sub.add_parser("hash", help="berth name vs flytekit on a spec over a 1 GiB tree, cold and warm")
    hash_.add_argument("--runs", type=int, default=3)
    hash_.add_argument("--disk-runs", type=int, default=2)
    hash_.add_argument("--kinds", nargs="+", default=["source_root", "copy"], choices=["source_root", "copy"])
    build = sub.add_parser("build", help="berth build vs docker build and podman build of the same Dockerfile; "
                                         "berth on LXD vs berth on Docker and containerd")
    build.add_argument("--runs", type=int, default=3, help="cold runs per tool (cached: twice as many)")
    build.add_argument("--engines", nargs="+", default=BUILD_ENGINES, choices=BUILD_ENGINES)
    build.add_argument("--no-classic", action="store_true", help="skip the classic-builder reference rows")
    push = sub.add_parser("push", help="berth push vs docker/podman push, skopeo copy and ctr push: 200 MB layers, a 1.5 GB image")
    push.add_argument("--runs", type=int, default=3)
    push.add_argument("--compare-bin", help="another berth binary (e.g. a build before a change): its push as a row "
                      "beside berth's own, alternating with it")
    push.add_argument("--compare-label", default="earlier", help="what --compare-bin is (a commit), for its row")
    push.add_argument("--storage-only", action="store_true",
                      help="only berth's own push (and --compare-bin's) and the curl row: not the other tools")
    push.add_argument("--mb", type=int, default=200)
    push.add_argument("--torch-mb", type=int, default=1500, help="the PyTorch-shaped image's size (0: leave it out)")
    push.add_argument("--shapes", nargs="+", default=["random", "text", "torch"], choices=["random", "text", "torch"],
                      help="which images to push (torch also needs --torch-mb above 0)")
    # podman-rootless: the rootless test user's Podman, every tool run as that user
    push.add_argument("--engines", nargs="+", default=ENGINES + ["podman-rootless"],
                      choices=ENGINES + ["podman-rootless"])
    memory = sub.add_parser("memory", help="berth's peak RSS building 256 MiB, 512 MiB and 1 GiB contexts")
    memory.add_argument("--engines", nargs="+", default=ENGINES, choices=ENGINES)
    large = sub.add_parser("large", help="a 1 GiB context built by berth and by the engines' CLIs, alternating")
    large.add_argument("--runs", type=int, default=3)
    large.add_argument("--engines", nargs="+", default=["docker", "podman"], choices=["docker", "podman", "containerd"])
    large_send = sub.add_parser("large-send", help="every file of a 1 GiB context sent: berth vs docker build")
    large_send.add_argument("--runs", type=int, default=3)
    large_send.add_argument("--quarters", type=int, default=4, choices=[1, 2, 3, 4],
                            help="how much of the tree: 256 MiB each (less disk)")
    large_send.add_argument("--against", help="a second berth binary to time beside (e.g. the previous commit's)")
    remote = sub.add_parser("remote", help="the same 256 MiB build on the local dockerd and on the remote one over TLS")
    remote.add_argument("--runs", type=int, default=3)
    remote_ssh = sub.add_parser("remote-ssh", help="a 256 MiB context built on a local engine vs the same over SSH")
    remote_ssh.add_argument("--runs", type=int, default=3)
    remote_ssh.add_argument("--engines", nargs="+", default=["docker", "podman"], choices=["docker", "podman"])
    scale = sub.add_parser("scale", help="berth build of a 50-image project, all present, vs flytekit exist()")
    scale.add_argument("--runs", type=int, default=5)
    scale.add_argument("--images", type=int, default=50)
    pyflyte = sub.add_parser("pyflyte", help="pyflyte package of 20 present ImageSpecs: berth plugin vs flytekit's builder")
    pyflyte.add_argument("--runs", type=int, default=5)
    pyflyte.add_argument("--images", type=int, default=20)
    sub.add_parser("all", help="every benchmark once, with its defaults")
    args = p.parse_args()
    order = ["name", "exists", "hash", "build", "push", "memory", "large", "remote", "remote-ssh", "scale", "pyflyte"]
    every = args.what == "all"
    for what in order if every else [args.what]:
        if every:
            args = p.parse_args([what])
            print(f"\n## {what}\n", flush=True)
        try:
            run(what, args)
        except Failed as e:
            sys.exit(str(e))


def run(what, args):
    if what in ("name", "exists"):
        import lookup
        return {"name": lookup.bench_name, "exists": lookup.bench_exists}[what](args)
    if what == "hash":
        import hashing
        return hashing.bench_hash(args)
    if what in ("build", "memory"):
        import build
        return {"build": build.bench_build, "memory": build.bench_memory}[what](args)
    if what == "large":
        import large
        return large.bench_large(args)
    if what == "large-send":
        import large
        return large.bench_large_send(args)
    if what == "remote":
        import remote
        return remote.bench_remote(args)
    if what == "remote-ssh":
        import remote_ssh
        return remote_ssh.bench_remote(args)
    if what == "push":
        import push
        return push.bench_push(args)
    if what == "scale":
        import scale
        return scale.bench_scale(args)
    if what == "pyflyte":
        import pyflyte
        return pyflyte.bench_pyflyte(args)


if __name__ == "__main__":
    main()
