"""`remote`: the same spec with a 256 MiB context built by berth on the local dockerd (unix socket) and on the
remote one of scripts/env/remote-docker.sh (TCP with TLS, in the network namespace berth-remote), side by side.

Both daemons run on this machine and share its disk and containerd, so the difference is the transport: the
context and the BuildKit session going through TLS over TCP (a veth pair) instead of a unix socket, and the
client certificate handshake of each connection. SSH rows (`ssh://` through `docker system dial-stdio`) are
another benchmark's; the table leaves their place."""

import subprocess
import tempfile
from pathlib import Path

from build import Setup, memory_spec
from common import CACHE, alternate, fmt, machine_line, md_table, measure, median, sh
from tree import ensure_tree, tree_bytes

# scripts/env/remote-docker.sh's defaults, when env.sh predates it
REMOTE_HOST = "tcp://10.203.0.2:2376"
REMOTE_CERTS = "/var/lib/berth-env/remote-docker/client"


def transports(s):
    """(label, environment) for each way berth reaches a daemon here."""
    local = dict(s.env)
    for var in ("DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH", "DOCKER_CONTEXT"):
        local.pop(var, None)
    host = s.tenv.get("BERTH_TEST_REMOTE_DOCKER_HOST", REMOTE_HOST)
    certs = s.tenv.get("BERTH_TEST_REMOTE_DOCKER_CERT_PATH", REMOTE_CERTS)
    tls = dict(local, DOCKER_HOST=host, DOCKER_TLS_VERIFY="1", DOCKER_CERT_PATH=certs)
    return [("local: unix:///var/run/docker.sock", local), (f"TLS: {host} (remote-docker.sh)", tls)]


VETH = "/sys/class/net/berth-rh0/statistics/tx_bytes"  # this machine's end of the pair: bytes sent to the remote


def sent_bytes():
    with open(VETH) as f:
        return int(f.read())


def measure_sent(cmd, env):
    """(seconds, peak RSS MiB, MiB sent to the remote host while cmd ran)."""
    before = sent_bytes()
    secs, rss, _ = measure(cmd, cwd=CACHE, env=env)
    return secs, rss, (sent_bytes() - before) / 2**20


def remote_docker(env, *args):
    host, certs = env["DOCKER_HOST"], env["DOCKER_CERT_PATH"]
    return ["docker", "--host", host, "--tlsverify", "--tlscacert", f"{certs}/ca.pem", "--tlscert",
            f"{certs}/cert.pem", "--tlskey", f"{certs}/key.pem", *args]


def bench_remote(args):
    tree = ensure_tree()
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="remote-") as tmp:
        s = Setup(Path(tmp))
        ways = transports(s)
        spec = CACHE / "remote-256.yaml"
        spec.write_text(memory_spec(s.tenv, "bench-remote-256", [f"{tree.name}/q0"]))
        size = tree_bytes([tree / "q0"])
        image = sh([s.berth, "name", spec.name], cwd=CACHE, capture_output=True, text=True,
                   env=s.env).stdout.strip()
        print(machine_line())
        print(f"berth: {s.berth}")
        print(f"Spec: bookworm-python fixture base, no packages, `copy:` of a 256 MiB tree ({size / 2**20:.0f} MiB, "
              "10,201 files of random bytes). `berth build --engine docker --no-push --force`; the "
              "digest cache is warm, so the rows time the build, not hashing. One untimed build on each daemon "
              "first (base image pulled). Runs alternate between the transports.")
        rows = []
        try:
            for label, env in ways:  # untimed: base image, uv image and cache mounts in place on each daemon
                sh([s.berth, "build", "--engine", "docker", "--no-push", "--force", "-q", spec.name], cwd=CACHE,
                   env=env, capture_output=True)
            for no_cache in (True, False):
                nc = ["--no-cache"] if no_cache else []
                cmd = [s.berth, "build", "--engine", "docker", "--no-push", "--force", "-q", *nc, spec.name]
                tools = [(label, lambda env=env: measure_sent(cmd, env)) for label, env in ways]
                runs = args.runs if no_cache else 2 * args.runs
                results = alternate(runs, tools)
                base = median([r[0] for r in results[ways[0][0]]])
                for i, (label, _) in enumerate(ways):
                    secs = [r[0] for r in results[label]]
                    m = median(secs)
                    sent = f"{median([r[2] for r in results[label]]):.1f}" if i else "-"
                    rows.append(("cold, `--no-cache`" if no_cache else "fully cached", label, fmt(m), len(secs),
                                 fmt(max(r[1] for r in results[label]), 1), f"{m / base:.2f}x", sent))
                rows.append(("", "SSH: ssh://HOST (dial-stdio)", "(another benchmark's)", "-", "-", "-", "-"))
        finally:
            subprocess.run(["docker", "rmi", "-f", image], capture_output=True, env=ways[0][1])
            subprocess.run(remote_docker(ways[1][1], "rmi", "-f", image), capture_output=True)
            spec.unlink()
        print("\n**The same 256 MiB build through each transport**\n")
        print(md_table(["build", "transport", "median s", "runs", "peak RSS MiB", "vs local",
                        "MiB sent to the remote"], rows))
        print("\n\"MiB sent\" counts every byte this machine sent over the veth pair while berth ran (context, "
              "session, TLS records, TCP), median over runs.")


if __name__ == "__main__":
    raise SystemExit("run it as `python3 bench/bench.py remote`")
