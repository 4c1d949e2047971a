"""`remote`: the same spec with a 256 MiB context built on an engine of this machine and on the same kind of engine
reached over SSH (the remote host of scripts/env/remote-ssh.sh, a network namespace at 10.203.0.2): what the SSH
transport costs a build. Docker over SSH reaches, through `docker system dial-stdio` on the remote host, the same
dockerd (/var/run/docker.sock), so its rows differ only in the transport; Podman over SSH reaches the remote
host's own rootful service (same storage, its own network and TMPDIR)."""

import os
import tempfile
from pathlib import Path

from build import Setup, remove
from common import CACHE, alternate, fmt, machine_line, md_table, measure, median, sh

CONTEXT_MIB = 256
FILES = 64  # 4 MiB each, random bytes (incompressible: what the transport carries is what the context is)


def ensure_context():
    """CACHE/remote-ctx: FILES random files, CONTEXT_MIB in all, made once."""
    ctx = CACHE / "remote-ctx"
    size = CONTEXT_MIB * 2**20 // FILES
    if not (ctx.is_dir() and len(list(ctx.iterdir())) == FILES):
        ctx.mkdir(parents=True, exist_ok=True)
        for i in range(FILES):
            (ctx / f"blob-{i:02}.bin").write_bytes(os.urandom(size))
    return ctx


def bench_remote(args):
    remote = os.environ.get("BERTH_TEST_REMOTE_ADDR", "10.203.0.2")
    key = os.environ.get("BERTH_TEST_REMOTE_SSH_KEY", "/var/lib/berth-env/remote-ssh/id_ed25519")
    ctx = ensure_context()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="remote-") as tmp:
        s = Setup(Path(tmp))
        spec = CACHE / "remote-256.yaml"
        spec.write_text(f"name: bench-remote\nregistry: {s.tenv['BERTH_TEST_REGISTRY']}/bench\n"
                        f"base_image: {s.tenv['BERTH_TEST_PYTHON_IMAGE']}\npython_exec: /usr/bin/python3\n"
                        f"builder_config: {{uv_image: \"{s.tenv['BERTH_TEST_UV_IMAGE']}\"}}\n"
                        "builder_options: {install_flytekit: false}\n"
                        f"copy: [{ctx.name}]\n")
        # each engine: (label, extra environment) for local, then over SSH
        setups = {
            "docker": [("local socket (unix:///var/run/docker.sock)", {"DOCKER_HOST": "unix:///var/run/docker.sock"}),
                       (f"over SSH (ssh://root@{remote}, dial-stdio)", {"DOCKER_HOST": f"ssh://root@{remote}"})],
            "podman": [("local socket (unix:///run/podman/podman.sock)",
                        {"CONTAINER_HOST": "unix:///run/podman/podman.sock"}),
                       (f"over SSH (ssh://root@{remote}/run/berth-remote/podman/podman.sock)",
                        {"CONTAINER_HOST": f"ssh://root@{remote}/run/berth-remote/podman/podman.sock",
                         "CONTAINER_SSHKEY": key})],
        }
        print(machine_line())
        print(f"One spec: bookworm-python fixture base, no packages, `copy:` of {CONTEXT_MIB} MiB in {FILES} random files, `berth build --no-push "
              f"--no-cache --force`, {args.runs} runs per row alternating local and SSH, medians; digests cached.")
        rows = []
        try:
            for engine in args.engines:
                tools = []
                for label, extra in setups[engine]:
                    cmd = [s.berth, "build", "--engine", engine, "--no-push", "--force", "-q", "--no-cache", spec.name]
                    tools.append((label, cmd, dict(s.env, **extra)))
                # one untimed build each: the base pulled, the digests cached
                for _, cmd, env in tools:
                    measure(cmd, cwd=CACHE, env=env)
                results = alternate(args.runs, [
                    (label, lambda cmd=cmd, env=env: measure(cmd, cwd=CACHE, env=env)) for label, cmd, env in tools])
                base = median([secs for secs, _, _ in results[tools[0][0]]])
                for label, _, _ in tools:
                    t = median([secs for secs, _, _ in results[label]])
                    peak = median([rss for _, rss, _ in results[label]])
                    rows.append((engine, label, fmt(t, 2), f"{CONTEXT_MIB / t:.0f}", fmt(peak, 1),
                                 f"{t / base:.2f}x"))
        finally:
            image = sh([s.berth, "name", spec.name], cwd=CACHE, capture_output=True, text=True,
                       env=s.env).stdout.strip()
            for engine in args.engines:
                remove(engine, image, [])
            spec.unlink()
        print(f"\n**{CONTEXT_MIB} MiB context, local engine vs the same engine over SSH**\n")
        print(md_table(["engine", "transport", "median s", "MiB/s", "peak RSS MiB", "vs local"], rows))
