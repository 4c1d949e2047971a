"""`build`: berth build against the engines' own CLIs building the same Dockerfile and context, cold and cached
(and, for LXD, berth on LXD beside berth on Docker and containerd and the docker CLI, the same spec);
`memory`: berth's peak RSS building contexts of 256 MiB to 1 GiB (the hash tree as `copy:`)."""

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from common import (CACHE, alternate, berth_binary, berth_login, fmt, machine_line, md_table, measure, median, sh,
                    test_env)
from tree import ensure_tree, tree_bytes

PODMAN_SOCKET = "unix:///run/podman/podman.sock"
DOCKER20 = "/usr/bin/docker"  # Debian's docker.io CLI (20.10): BuildKit built in, no buildx needed
PACKAGES = ["six", "idna"]


def small_spec(tenv, name="bench-build"):
    return (f"name: {name}\n"
            f"registry: {tenv['BERTH_TEST_REGISTRY']}/bench\n"
            f"base_image: {tenv['BERTH_TEST_PYTHON_IMAGE']}\n"
            "python_exec: /usr/bin/python3\n"
            f"packages: [{', '.join(PACKAGES)}]\n"
            "apt_packages: [jq]\n"
            "env: {BENCH: \"1\", LOG_LEVEL: info}\n"
            "copy: [app.py]\n"
            f"builder_config: {{uv_image: \"{tenv['BERTH_TEST_UV_IMAGE']}\"}}\n"
            "builder_options: {install_flytekit: false}\n")


def render(berth, spec, ctx, packages):
    """Writes the Dockerfile berth builds (Dockerfile; Dockerfile.podman with the `sharing=shared` cache mounts
    berth renders for Podman) and its build context into ctx, from `berth render` and `berth render --context`.
    Files are hard-linked (no copy of a large tree)."""
    ctx.mkdir(parents=True)
    dockerfile = sh([berth, "render", spec.name], cwd=spec.parent, capture_output=True, text=True).stdout
    listing = sh([berth, "render", "--context", spec.name], cwd=spec.parent, capture_output=True, text=True).stdout
    for line in listing.splitlines():
        path, source = line.split("\t", 1)
        dest = ctx / path
        dest.parent.mkdir(parents=True, exist_ok=True)
        if source.startswith("(generated"):
            if path != "requirements_uv.txt":
                raise SystemExit(f"cannot reproduce generated context file {path}")
            data = "\n".join(packages).encode()
            if f"{len(data)} bytes" not in source:
                raise SystemExit(f"requirements_uv.txt: berth generated {source}, this script {len(data)} bytes")
            dest.write_bytes(data)
        elif os.path.isdir(source):
            sh(["cp", "-al", source, dest])
        else:
            try:
                os.link(source, dest)
            except OSError:
                shutil.copy2(source, dest)
    (ctx / "Dockerfile").write_text(dockerfile)
    (ctx / "Dockerfile.podman").write_text(dockerfile.replace("sharing=locked", "sharing=shared"))
    (ctx / "Dockerfile.classic").write_text(classic_variant(dockerfile))
    return dockerfile


def classic_variant(dockerfile):
    """The closest Dockerfile the classic builder accepts: no cache mounts, bind mounts turned into COPYs before
    the RUN (so the files stay in the image). Not the same build: only a reference for `docker build` here."""
    instructions, current = [], ""
    for line in dockerfile.split("\n"):
        current += line
        if line.endswith("\\"):
            current += "\n"
            continue
        instructions.append(current)
        current = ""
    out = []
    for ins in instructions:
        if not ins.startswith("RUN --mount="):
            out.append(ins)
            continue
        rest = ins[len("RUN "):]
        while True:
            rest = rest.lstrip(" \\\n")
            if not rest.startswith("--mount="):
                break
            token, _, rest = rest.partition(" ")
            fields = dict(part.split("=", 1) for part in token[len("--mount="):].split(","))
            if fields.get("type") == "cache":
                continue
            source = fields.get("source") or fields.get("src")
            if "from" in fields:
                out.append(f"COPY --from={fields['from']} {source} {fields['target']}")
            elif fields.get("type") == "bind":
                out.append(f"COPY {source} {fields['target']}")
            else:
                raise SystemExit(f"no classic equivalent for --mount={token}")
        out.append("RUN " + rest)
    return "\n".join(out)


class Setup:
    """A private DOCKER_CONFIG logged in to the test registry (berth, the docker CLIs and podman read it)."""

    def __init__(self, tmp):
        self.berth = berth_binary()
        self.tenv = test_env()
        self.config = tmp / "docker-config"
        # LXD builds keep their store, step cache and cache mounts in a state folder of this run (the base is
        # pulled into it by the first, untimed, build; LXD's image of the base is shared, by its digest)
        self.env = dict(os.environ, DOCKER_CONFIG=str(self.config), BERTH_CACHE_DIR=str(CACHE / "digest-cache"),
                        BERTH_LXD_STATE_DIR=str(tmp / "lxd-state"))
        self.env.pop("DOCKER_HOST", None)
        berth_login(self.berth, self.env, self.tenv)
        self.auth = str(self.config / "config.json")


def copy_fixture_as(s, source, names):
    """Puts `source` in the test registry under each of `names` (registry-side copies with skopeo: checks only read
    manifests, so what the images hold does not matter); returns the seconds it took, for the setup note."""
    start = time.perf_counter()
    creds = f"{s.tenv['BERTH_TEST_REGISTRY_USER']}:{s.tenv['password']}"
    for name in names:
        sh(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false", "--src-creds", creds,
            "--dest-creds", creds, f"docker://{source}", f"docker://{name}"])
    return time.perf_counter() - start


def tool_commands(s, spec, ctx, engine, no_cache, classic):
    """(label, command) for each tool that builds ctx on engine."""
    nc = ["--no-cache"] if no_cache else []
    berth = [s.berth, "build", "--engine", engine, "--no-push", "--force", "-q", *nc, spec.name]
    if engine == "docker":
        tools = [("`berth build --engine docker` (BuildKit, berth's session)", berth, spec.parent, s.env),
                 ("`DOCKER_BUILDKIT=1 docker build` (docker 20.10 CLI, BuildKit)",
                  [DOCKER20, "build", *nc, "-t", "bench-build-docker-cli", "-f", ctx / "Dockerfile", ctx], None,
                  dict(s.env, DOCKER_BUILDKIT="1"))]
        if classic:
            tools.append(("`docker build` (docker 28 CLI, no buildx: classic builder; mount-free variant, "
                          "reference only)",
                          ["docker", "build", *nc, "-t", "bench-build-classic", "-f", ctx / "Dockerfile.classic",
                           ctx], None, dict(s.env, DOCKER_BUILDKIT="0")))
        return tools
    docker_cli = ("`DOCKER_BUILDKIT=1 docker build` (docker 20.10 CLI, BuildKit)",
                  [DOCKER20, "build", *nc, "-t", "bench-build-docker-cli", "-f", ctx / "Dockerfile", ctx], None,
                  dict(s.env, DOCKER_BUILDKIT="1"))
    if engine == "containerd":
        return [("`berth build --engine containerd` (berth's native builder: runc steps, layers from the overlay upper folder)", berth,
                 spec.parent, s.env),
                docker_cli,
                ("`berth build --engine docker`", [*berth[:3], "docker", *berth[4:]], spec.parent, s.env)]
    if engine == "lxd":
        # the same spec on berth's two builders of its own and on Docker, berth's and the CLI's
        return [("`berth build --engine lxd` (berth's builder: steps by LXD exec in one privileged container, "
                 "layers from root-folder differences)", berth, spec.parent, s.env),
                docker_cli,
                ("`berth build --engine docker` (BuildKit, berth's session)", [*berth[:3], "docker", *berth[4:]],
                 spec.parent, s.env),
                ("`berth build --engine containerd` (berth's builder: runc steps, layers from the overlay upper "
                 "folder)", [*berth[:3], "containerd", *berth[4:]], spec.parent, s.env)]
    if engine == "lxd-remote":
        # the same spec on the remote LXD server (over HTTPS, layers from exports) and on this machine's
        remote = dict(s.env, BERTH_LXD_REMOTE=s.tenv.get("BERTH_TEST_REMOTE_LXD", "berth-remote"),
                      LXD_CONF=s.tenv.get("BERTH_TEST_REMOTE_LXD_CONF", "/var/lib/berth-env/remote-lxd/client"))
        local = [*berth[:3], "lxd", *berth[4:]]
        return [("`berth build --engine lxd` on the remote LXD (`BERTH_LXD_REMOTE`: HTTPS, each step's layer from "
                 "an instance export)", local, spec.parent, remote),
                ("`berth build --engine lxd` on this machine's LXD (layers from the root folder)", local,
                 spec.parent, s.env)]
    podman_args = ["build", *nc, "--layers", "--format", "docker", "--authfile", s.auth, "-t",
                   "bench-build-podman-cli", "-f", ctx / "Dockerfile.podman", ctx]
    return [("`berth build --engine podman` (rootful service)", berth, spec.parent, s.env),
            ("`podman build` (buildah in the CLI process)", ["podman", *podman_args], None, s.env),
            ("`podman --remote build` (the same service berth uses)",
             ["podman", "--remote", "--url", PODMAN_SOCKET, *podman_args], None, s.env)]


def bench_build(args):
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="build-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        work = tmp / "spec"
        work.mkdir()
        (work / "app.py").write_text("print('hello from the benchmark image')\n")
        spec = work / "spec.yaml"
        spec.write_text(small_spec(s.tenv))
        ctx = tmp / "ctx"
        render(s.berth, spec, ctx, PACKAGES)
        image = sh([s.berth, "name", spec.name], cwd=work, capture_output=True, text=True,
                   env=s.env).stdout.strip()
        print(machine_line())
        print("spec: bookworm-python fixture base, python_exec, packages six and idna (uv from the uv fixture), "
              "apt package jq, two env values, one copied file, install_flytekit false. The CLIs build the "
              "Dockerfile and context `berth render` / `berth render --context` print, from a folder; berth "
              "streams the same as a tar. Cold: `--no-cache` for every tool (base images local; the apt and uv "
              "cache mounts stay warm for all; on LXD the base is already an LXD image). Cached: nothing changed "
              "since the last build. Peak RSS is the client process's (the daemon or service does the work, "
              "except in `podman build`; berth on containerd and on LXD writes layers in its own process).")
        try:
            for engine in args.engines:
                tools = tool_commands(s, spec, ctx, engine, False, not args.no_classic)
                rows = []
                for no_cache, runs in ((True, args.runs), (False, 2 * args.runs)):
                    tools = tool_commands(s, spec, ctx, engine, no_cache, not args.no_classic)
                    # untimed first: cold runs start with the cache mounts (apt, uv) filled for every tool,
                    # cached runs with everything cached
                    for _, cmd, cwd, env in tools:
                        measure(cmd, cwd=cwd, env=env)
                    results = alternate(runs, [(label, (lambda c=cmd, d=cwd, e=env: measure(c, cwd=d, env=e)))
                                               for label, cmd, cwd, env in tools])
                    base = median([r[0] for r in results[tools[0][0]]])
                    for label, *_ in tools:
                        secs = [r[0] for r in results[label]]
                        rss = max(r[1] for r in results[label])
                        m = median(secs)
                        rows.append(("cold, `--no-cache`" if no_cache else "fully cached", label, fmt(m),
                                     len(secs), fmt(rss, 1), f"{m / base:.2f}x",
                                     f"{(base / m - 1) * 100:+.1f}%" if label != tools[0][0] else "-"))
                if engine == "lxd":
                    print("\n**Building the same spec with berth on LXD, Docker and containerd, and with the docker "
                          "CLI**\n")
                elif engine == "lxd-remote":
                    print("\n**Building the same spec with berth on the remote LXD server and on this machine's "
                          "LXD**\n")
                else:
                    print(f"\n**Building the same Dockerfile and context on {engine}**\n")
                print(md_table(["build", "tool", "median s", "runs", "peak RSS MiB", "vs berth",
                                "berth time vs this tool"], rows))
        finally:
            cleanup_docker = ["bench-build-docker-cli", "bench-build-classic", image]
            subprocess.run(["docker", "rmi", "-f", *cleanup_docker], capture_output=True)
            subprocess.run(["podman", "rmi", "-f", "bench-build-podman-cli", image], capture_output=True)
            subprocess.run(["ctr", "-n", "default", "images", "rm", image], capture_output=True)
        if "docker" in args.engines:
            print("\nberth on Docker always uses BuildKit (through its own session); `berth build` has no switch to "
                  "the classic builder (the library has `Builder::Classic`, which refuses `RUN --mount`, and "
                  "berth's Dockerfiles use cache and bind mounts). The docker 28 CLI here has no buildx, so plain "
                  "`docker build` is the classic builder and fails on this Dockerfile (\"the --mount option "
                  "requires BuildKit\"); its row builds a variant without mounts, so it is not the same work. "
                  "The apples-to-apples row is docker 20.10's CLI with `DOCKER_BUILDKIT=1`, which drives the "
                  "same daemon's BuildKit as berth.")


def memory_spec(tenv, name, copies):
    return (f"name: {name}\nregistry: {tenv['BERTH_TEST_REGISTRY']}/bench\n"
            f"base_image: {tenv['BERTH_TEST_PYTHON_IMAGE']}\npython_exec: /usr/bin/python3\n"
            f"builder_config: {{uv_image: \"{tenv['BERTH_TEST_UV_IMAGE']}\"}}\n"
            "builder_options: {install_flytekit: false}\n"
            f"copy: [{', '.join(copies)}]\n")


def bench_memory(args):
    tree = ensure_tree()
    sizes = [("256 MiB", ["q0"]), ("512 MiB", ["q0", "q1"]), ("1 GiB", ["q0", "q1", "q2", "q3"])]
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="memory-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        print(machine_line())
        print("Each spec: bookworm-python fixture base, no packages, `copy:` of part or all of the 1 GiB tree "
              "(random bytes, 10,201 files per 256 MiB). One `--no-cache` build per row. The build rows start with "
              "the tree's digests cached (the naming row shows hashing it from scratch, page cache warm). The CLIs "
              "build the same Dockerfile and context (hard-linked into a folder), at 1 GiB, for reference. Peak "
              "RSS is the client process's.")
        rows, cleanup, specs = [], [], []
        try:
            # Every hard link changes the files' ctime, which is part of berth's digest-cache key: make all
            # the contexts first, then fill the cache, then build.
            for label, quarters in sizes:
                copies = [f"{tree.name}/{q}" for q in quarters]
                spec = CACHE / f"memory-{len(quarters)}.yaml"
                spec.write_text(memory_spec(s.tenv, f"bench-memory-{len(quarters)}", copies))
                ctx = tmp / f"ctx-{len(quarters)}"
                render(s.berth, spec, ctx, [])
                specs.append((label, quarters, spec, ctx))
            for label, quarters, spec, ctx in specs:
                size = tree_bytes([tree / q for q in quarters])
                secs, rss, _ = measure([s.berth, "name", spec.name], cwd=CACHE,
                                       env=dict(s.env, BERTH_CACHE_DIR=str(tmp / f"name-cache-{len(quarters)}")))
                rows.append((label, "-", "`berth name`, empty digest cache (hashes the tree)", fmt(rss, 1),
                             fmt(secs, 1), f"{size / 2**20 / secs:.0f}"))
                image = sh([s.berth, "name", spec.name], cwd=CACHE, capture_output=True, text=True,
                           env=s.env).stdout.strip()
                cleanup.append(image)
                for engine in args.engines:
                    tools = tool_commands(s, spec, ctx, engine, True, False)
                    if engine in ("podman", "containerd"):
                        tools = tools[:2]
                    if quarters != sizes[-1][1]:
                        tools = tools[:1]
                    for tool, cmd, cwd, env in tools:
                        secs, rss, _ = measure(cmd, cwd=cwd, env=env)
                        rows.append(("", engine, tool, fmt(rss, 1), fmt(secs, 1), f"{size / 2**20 / secs:.0f}"))
                    remove(engine, image, ["bench-build-docker-cli", "bench-build-podman-cli"])
        finally:
            for engine in args.engines:
                remove(engine, None, cleanup + ["bench-build-docker-cli", "bench-build-podman-cli"])
            for _, _, spec, _ in specs:
                spec.unlink()
        print("\n**Peak RSS while building a large context**\n")
        print(md_table(["context", "engine", "tool", "peak RSS MiB", "s", "MiB/s"], rows))


def remove(engine, image, others):
    names = [n for n in [image, *others] if n]
    if engine == "containerd":
        subprocess.run(["ctr", "-n", "default", "images", "rm", *names], capture_output=True)
        engine = "docker"  # the reference row builds with docker
    subprocess.run([engine, "rmi", "-f", *names], capture_output=True)
