"""`large`: a 1 GiB context (the whole hash tree as `copy:`) built by berth and by the engine's own CLIs, side by side.

Docker: `berth build --engine docker` (BuildKit; the context through berth's session file sync) against
`DOCKER_BUILDKIT=1 docker build` (docker 20.10 CLI, the same file sync) on the same Dockerfile and context folder.
Podman: berth (the rootful service, a tar in the request body) against `podman --remote build` (the same service)
and `podman build` (buildah in the CLI process). Rows:

- first build (`--no-cache`): the untimed warm-up of the other modes, timed. BuildKit keys the files it keeps by
  the session's shared key: the CLI's is its context folder, berth's the folder holding the spec's sources; both
  are new in each run (the tree is hard-linked into the run's folder), so each tool sends every byte, and
  `--no-cache` keeps the second tool from reusing the first one's `COPY` results (BuildKit keys them by content);
- `--no-cache`: every step runs again; BuildKit still keeps the files of the last sync, so each tool sends only
  what changed (nothing);
- one file changed: a 1 KiB file of the tree rewritten with new bytes (same size) before each run, no
  `--no-cache`: the COPY runs again, everything before it is cached.

containerd (`--engines containerd`): berth's own builder against `DOCKER_BUILDKIT=1 docker build` and berth on
Docker, the same spec and context (no CLI builds on containerd without BuildKit); `--no-cache` and one-file-changed
rows (the changed quarter's layer is new: berth writes it to containerd's content store).

Podman has no file sync: every build sends and unpacks the whole context, so only `--no-cache` rows are run,
plus a reference row of the libpod service building from the context folder itself (`remote=<folder>`, which
Podman 4.3 reads as a local path when it is not a URL): what the tar costs on the service's side.
"""

import datetime
import json
import os
import subprocess
import tempfile
import time
from pathlib import Path

from build import DOCKER20, Setup, memory_spec, remove, render, tool_commands
from common import CACHE, alternate, fmt, machine_line, md_table, measure, median, sh
from tree import ensure_tree

QUARTERS = ["q0", "q1", "q2", "q3"]


def folder_build(ctx, no_cache):
    """(label, command, cwd, env) of a libpod build from the context folder itself: `remote=<folder>` on a local
    service makes Podman 4.3 build from that path (as `podman build` does) after extracting the (empty) tar body."""
    (ctx / "Containerfile").write_bytes((ctx / "Dockerfile.podman").read_bytes())
    query = f"remote={ctx}&t=localhost/bench-build-podman-folder&layers=true" + ("&nocache=true" if no_cache else "")
    script = (f"tar -cf - -T /dev/null | curl -sS --fail --unix-socket /run/podman/podman.sock -X POST "
              f"-H 'Content-Type: application/x-tar' --data-binary @- 'http://d/v4.3.1/libpod/build?{query}' "
              f"> {ctx.parent}/folder-build.log && ! grep -q '\"error\"' {ctx.parent}/folder-build.log")
    return ("libpod `/build?remote=<context folder>`, empty tar body (curl; not something berth does)",
            ["sh", "-c", script], None, None)


def bench_large(args):
    shared = ensure_tree()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="large-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        # The spec's sources are a hard-linked copy of the tree in this run's folder: berth's session shared key
        # names the folder holding them, so BuildKit has kept no files of an earlier run and the first build
        # sends every file, as the CLI's does from its new context folder (no second GiB on disk).
        tree = tmp / shared.name
        sh(["cp", "-al", str(shared), str(tree)])
        # the file rewritten between "one file changed" runs: a small text file of the tree, restored afterwards
        touched = next((tree / "q3").rglob("notes_*.txt"))
        original = touched.read_bytes()
        spec = tmp / f"large-context-{'-'.join(args.engines)}.yaml"
        spec.write_text(memory_spec(s.tenv, "bench-large", [f"{tree.name}/{q}" for q in QUARTERS]))
        ctx = tmp / "ctx"
        render(s.berth, spec, ctx, [])
        # untimed: hashes the copy's files once (new paths), as the other rows find them in the digest cache
        image = sh([s.berth, "name", spec.name], cwd=tmp, capture_output=True, text=True,
                   env=s.env).stdout.strip()
        print(machine_line())
        print("Spec: bookworm-python fixture base, no packages, `copy:` of the whole 1 GiB tree (40,804 files, "
              "random bytes). The CLIs build the Dockerfile and context `berth render` prints, hard-linked into a "
              "folder. Tools alternate; medians; peak RSS of the client process.")
        rows = []
        version = [0]

        def change_one_file():
            # bytes no earlier run wrote: a repeated version would be a cache hit for BuildKit (it keys COPY by
            # content) and a blob berth's containerd store already holds
            version[0] += 1
            data = bytearray(original)
            data[:16] = f"{time.time_ns() % 10**12:012}{version[0]:04}".encode()
            touched.write_bytes(bytes(data))

        try:
            for engine in args.engines:
                cold = tool_commands(s, spec, ctx, engine, True, False)
                if engine == "docker":
                    first = {label: measure(cmd, cwd=cwd, env=env) for label, cmd, cwd, env in cold}
                    for label, *_ in cold:
                        rows.append((engine, "first build (all files sent)", label, fmt(first[label][0]), 1,
                                     fmt(first[label][1], 1), "-"))
                else:
                    for _, cmd, cwd, env in cold:
                        measure(cmd, cwd=cwd, env=env)
                if engine == "podman":
                    cold = cold + [folder_build(ctx, True)]
                    measure(cold[-1][1])
                modes = [("`--no-cache`", cold, None)]
                if engine in ("docker", "containerd"):
                    modes.append(("one file changed", tool_commands(s, spec, ctx, engine, False, False),
                                  change_one_file))
                for mode, tools, before in modes:
                    def run(cmd, cwd, env, before=before):
                        if before:
                            before()
                        return measure(cmd, cwd=cwd, env=env)
                    results = alternate(args.runs, [(label, (lambda c=cmd, d=cwd, e=env: run(c, d, e)))
                                                    for label, cmd, cwd, env in tools])
                    base = median([r[0] for r in results[tools[0][0]]])
                    for label, *_ in tools:
                        secs = [r[0] for r in results[label]]
                        m = median(secs)
                        rows.append((engine, mode, label, fmt(m), len(secs),
                                     fmt(max(r[1] for r in results[label]), 1),
                                     "-" if label == tools[0][0] else f"{(base / m - 1) * 100:+.1f}%"))
        finally:
            touched.write_bytes(original)
            # the digest cache keys on ctime: put back what the other benchmarks expect by restoring the bytes
            # (their next `berth name` hashes this one file again)
            os.utime(touched)
            for engine in args.engines:
                remove(engine, image, ["bench-build-docker-cli", "bench-build-podman-cli",
                                       "localhost/bench-build-podman-folder"])
            subprocess.run(["rm", "-rf", str(ctx), str(tree)])
        print("\n**Building a 1 GiB context**\n")
        print(md_table(["engine", "build", "tool", "median s", "runs", "peak RSS MiB", "berth time vs this tool"],
                       rows))


def own_records(before, since):
    """The ids of BuildKit records that were not there in `before`, were last used after `since` (UTC,
    `YYYY-MM-DD HH:MM:SS`, as dockerd prints it) and are not in use: what a build just made. (A build someone else
    runs on the same daemon at the same time would match too.)"""
    out = subprocess.run(["docker", "system", "df", "-v", "--format", "{{json .BuildCache}}"], capture_output=True,
                         text=True).stdout
    return {r["ID"] for r in json.loads(out or "[]")
            if r["ID"] not in before and r["InUse"] == "false" and (r.get("LastUsedAt") or "") >= since}


def prune_own(before, since):
    """Removes what one build left in BuildKit's cache (a GiB of kept files and a GiB of COPY results), so that a
    run of several full sends fits the disk. One id per call (dockerd takes one value per filter); a record goes
    once its children have, so a few passes."""
    for _ in range(12):
        left = own_records(before, since)
        if not left:
            return
        for record in left:
            subprocess.run(["docker", "builder", "prune", "-a", "-f", "--filter", f"id={record}"], capture_output=True)


def bench_large_send(args):
    """`large-send`: the first-build row alone, every file of the 1 GiB tree sent, with each build's BuildKit records
    pruned after it (a full `large` run on Docker keeps about 6 GB). Each run hard-links the tree into a new folder
    (a new shared key for berth; the CLI's context folder is new too) and builds with `--no-cache`. Also times a
    second berth binary (`--against`, e.g. the previous commit's) when given. Reports wall time, peak RSS and the
    client's CPU time (user + system, from GNU time), which the other builds on a shared machine move less."""
    shared = ensure_tree()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="large-send-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        berths = [("`berth build --engine docker`", s.berth)]
        if args.against:
            berths.append((f"`berth build --engine docker` ({args.against})", Path(args.against)))
        cli = "`DOCKER_BUILDKIT=1 docker build` (docker 20.10 CLI)"
        print(machine_line())
        print(f"Every file of {args.quarters} quarter(s) of the 1 GiB tree sent (10,201 files per 256 MiB), "
              "`--no-cache`, each run in a new folder; BuildKit's records of each build pruned after it. Tools "
              "alternate; medians.")
        out = subprocess.run(["docker", "system", "df", "-v", "--format", "{{json .BuildCache}}"],
                             capture_output=True, text=True).stdout
        before = {r["ID"] for r in json.loads(out or "[]")}
        runs = [0]

        def one(label, berth):
            runs[0] += 1
            folder = tmp / f"run{runs[0]}"
            folder.mkdir()
            tree = folder / shared.name
            sh(["cp", "-al", str(shared), str(tree)])
            spec = folder / "large.yaml"
            quarters = QUARTERS[:args.quarters]
            spec.write_text(memory_spec(s.tenv, "bench-large-send", [f"{tree.name}/{q}" for q in quarters]))
            # untimed: the copy's files are hashed once (new paths), as a build of a known tree finds them cached
            image = sh([s.berth, "name", spec.name], cwd=folder, capture_output=True, text=True,
                       env=s.env).stdout.strip()
            if berth is None:
                ctx = folder / "ctx"
                render(s.berth, spec, ctx, [])
                cmd, cwd, env = ([DOCKER20, "build", "--no-cache", "-t", "bench-large-send-cli", "-f",
                                  ctx / "Dockerfile", ctx], None, dict(s.env, DOCKER_BUILDKIT="1"))
            else:
                cmd, cwd, env = ([berth, "build", "--engine", "docker", "--no-push", "--force", "--no-cache",
                                  spec.name], folder, s.env)
            since = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
            try:
                start = os.times()
                secs, rss, _ = measure(cmd, cwd=cwd, env=env)
                end = os.times()
                cpu = (end.children_user - start.children_user) + (end.children_system - start.children_system)
            finally:
                remove("docker", image, ["bench-large-send-cli"])
                prune_own(before, since)
                subprocess.run(["rm", "-rf", str(folder)])
            return secs, rss, cpu

        tools = [(label, (lambda b=b, lb=label: one(lb, b))) for label, b in berths] + [(cli, lambda: one(cli, None))]
        results = alternate(args.runs, tools)
        base = median([r[0] for r in results[cli]])
        rows = []
        for label, _ in tools:
            secs = [r[0] for r in results[label]]
            rows.append((label, fmt(median(secs)), len(secs), fmt(max(r[1] for r in results[label]), 1),
                         fmt(median([r[2] for r in results[label]]), 1),
                         "-" if label == cli else f"{(median(secs) / base - 1) * 100:+.1f}%"))
        print(f"\n**Sending every file of a {256 * args.quarters} MiB context (Docker)**\n")
        print(md_table(["tool", "median s", "runs", "peak RSS MiB", "client CPU s", "time vs the CLI"], rows))
