"""`push`: berth push against docker push, podman push and skopeo copy of images with one 200 MB layer, random
(incompressible) or text (compressible), to a throwaway registry with the test registry's credentials."""

import os
import shutil
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from common import CACHE, Failed, berth_login, fmt, machine_line, md_table, measure, median, sh
from build import Setup

PORT = 5055


def payload(kind, mb):
    """A cached payload file: `random` (AES-CTR stream, incompressible) or `text` (repeated lines, gzip ~100x)."""
    path = CACHE / f"push-{kind}-{mb}mb.bin"
    if path.exists() and path.stat().st_size == mb * 10**6:
        return path
    tmp = path.with_suffix(".tmp")
    if kind == "random":
        sh(["sh", "-c", f"openssl enc -aes-128-ctr -nosalt -pbkdf2 -pass pass:berth-push -in /dev/zero 2>/dev/null "
                        f"| head -c {mb * 10**6} > {tmp}"])
    else:
        line = b"2026-11-28T09:00:00Z INFO worker-7 processed batch with 1024 records in 35 ms (ok)\n"
        with open(tmp, "wb") as f:
            block = line * (2**20 // len(line))
            left = mb * 10**6
            while left:
                f.write(block[:left])
                left -= min(left, len(block))
    tmp.rename(path)
    return path


class Registry:
    """docker-registry on 127.0.0.1:PORT with its own storage (deleted afterwards) and the test registry's htpasswd,
    so every push uploads every byte and nothing is left in the shared registry."""

    def __init__(self, tmp, htpasswd):
        self.addr = f"127.0.0.1:{PORT}"
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", PORT)) == 0:
                raise SystemExit(f"port {PORT} is taken; stop whatever listens there first")
        self.dir = tmp / "registry"
        self.dir.mkdir()
        config = self.dir / "config.yml"
        config.write_text(f"version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"
                          f"storage:\n  filesystem:\n    rootdirectory: {self.dir / 'data'}\n"
                          f"http:\n  addr: {self.addr}\n  secret: berth-bench-{os.getpid()}\n"
                          f"auth:\n  htpasswd:\n    realm: berth-bench\n    path: {htpasswd}\n")
        self.proc = subprocess.Popen(["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL,
                                     stderr=open(self.dir / "log", "w"))
        for _ in range(100):
            try:
                urllib.request.urlopen(f"http://{self.addr}/v2/", timeout=1)
                break
            except urllib.error.HTTPError:  # 401: up, and asking for credentials
                break
            except OSError:
                time.sleep(0.1)
        else:
            raise SystemExit("the benchmark registry did not start")

    def close(self):
        self.proc.terminate()
        self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def bench_push(args):
    payloads = {kind: payload(kind, args.mb) for kind in ("random", "text")}
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="push-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        registry = Registry(tmp, "/var/lib/berth-env/registry/htpasswd")
        try:
            berth_login(s.berth, s.env, dict(s.tenv, BERTH_TEST_REGISTRY=registry.addr))
            run(args, s, registry, payloads, tmp)
        finally:
            registry.close()


def run(args, s, registry, payloads, tmp):
    busybox = s.tenv["BERTH_TEST_BUSYBOX_IMAGE"]
    user, password = s.tenv["BERTH_TEST_REGISTRY_USER"], s.tenv["password"]
    counter = iter(range(10**6))

    def make_image(engine, kind, tag):
        """Builds FROM busybox + one layer holding the payload with a unique first 64 bytes, so no registry or
        engine has seen the layer before."""
        n = next(counter)
        ctx = tmp / f"ctx-{n}"
        ctx.mkdir()
        with open(payloads[kind], "rb") as src, open(ctx / "payload.bin", "wb") as dst:
            dst.write(f"{tag} {n} {time.time_ns()}".encode().ljust(64, b"\n"))
            src.seek(64)
            shutil.copyfileobj(src, dst, 8 * 2**20)
        (ctx / "Dockerfile").write_text(f"FROM {busybox}\nCOPY payload.bin /payload.bin\n")
        if engine == "podman":
            build = ["podman", "build", "-q", "--format", "docker", "-t", tag, ctx]
        else:
            build = ["docker", "build", "-q", "-t", tag, ctx]
        try:
            sh(build, capture_output=True, env=dict(s.env, DOCKER_BUILDKIT="0"))
        except Failed as e:  # the engines are shared with other test runs: one retry, saying why
            print(f"(retrying an untimed image build: {str(e).splitlines()[-1]})", flush=True)
            sh(build, capture_output=True, env=dict(s.env, DOCKER_BUILDKIT="0"))
        shutil.rmtree(ctx)
        if engine == "containerd":
            to_containerd(tag)

    def to_containerd(tag):
        """The docker image into containerd's `default` namespace with gzip layers, as an image berth built there
        would have them: skopeo writes an OCI layout (compressing), ctr imports it. The layout is kept for the
        `skopeo copy oci:` row, which uploads the very same blobs."""
        layout = oci_layout(tag)
        sh(["skopeo", "copy", "--quiet", f"docker-daemon:{tag}", f"oci:{layout}"], capture_output=True)
        archive = layout.with_suffix(".tar")
        sh(["tar", "-C", layout, "-cf", archive, "."])
        sh(["ctr", "-n", "default", "images", "import", "--index-name", tag, archive], capture_output=True)
        archive.unlink()

    def oci_layout(tag):
        return tmp / ("oci-" + tag.replace("/", "_").replace(":", "_"))

    def remove(engine, tag):
        if engine == "containerd":
            subprocess.run(["ctr", "-n", "default", "images", "rm", tag], capture_output=True)
            shutil.rmtree(oci_layout(tag), ignore_errors=True)
        subprocess.run([engine if engine == "podman" else "docker", "rmi", "-f", tag], capture_output=True)

    def tools(engine):
        def berth_push(kind):
            name = f"berth-{engine}-{kind}-{next(counter)}"
            spec = tmp / f"{name}.yaml"
            spec.write_text(f"name: {name}\nregistry: {registry.addr}/bench\npackages: [numpy]\n")
            tag = sh([s.berth, "name", spec.name], cwd=tmp, env=s.env, capture_output=True, text=True).stdout.strip()
            return tag, [s.berth, "push", "-q", "--engine", engine, spec.name]

        def cli_push(kind):
            tag = f"{registry.addr}/bench/{engine}-cli-{kind}-{next(counter)}:1"
            if engine == "docker":
                return tag, ["docker", "push", "-q", tag]
            if engine == "containerd":
                return tag, ["ctr", "-n", "default", "images", "push", "--plain-http", "--user",
                             f"{user}:{password}", tag]
            return tag, ["podman", "push", "--quiet", "--tls-verify=false", "--authfile", s.auth, tag]

        def skopeo_layout(kind):
            tag = f"{registry.addr}/bench/skopeo-oci-{kind}-{next(counter)}:1"
            return tag, ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                         f"{user}:{password}", f"oci:{oci_layout(tag)}", f"docker://{tag}"]

        def skopeo(kind):
            tag = f"{registry.addr}/bench/skopeo-{engine}-{kind}-{next(counter)}:1"
            source = f"containers-storage:{tag}" if engine == "podman" else f"docker-daemon:{tag}"
            return tag, ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                         f"{user}:{password}", source, f"docker://{tag}"]

        if engine == "containerd":
            return [("`berth push --engine containerd` (berth's own push from the content store)", berth_push),
                    ("`ctr images push` (containerd's CLI, same image)", cli_push),
                    ("`skopeo copy oci:` (the same gzip blobs from an OCI layout)", skopeo_layout),
                    ("`skopeo copy docker-daemon:` (compresses while it uploads, as in the docker rows)", skopeo)]
        if engine == "podman":
            def remote_push(kind):
                tag, cmd = cli_push(kind)
                return tag, ["podman", "--remote", "--url", "unix:///run/podman/podman.sock", *cmd[1:]]

            return [("`berth push --engine podman` (through the rootful service)", berth_push),
                    ("`podman push`", cli_push),
                    ("`podman --remote push` (through the same service)", remote_push),
                    ("`skopeo copy containers-storage:`", skopeo)]
        return [(f"`berth push --engine {engine}`", berth_push),
                (f"`{engine} push`", cli_push),
                (f"`skopeo copy {'containers-storage:' if engine == 'podman' else 'docker-daemon:'}`", skopeo)]

    print(machine_line())
    print(f"Each push sends an image FROM the busybox fixture plus one {args.mb} MB layer whose first bytes are new "
          f"for every push (so nothing is skipped or mounted), to a fresh docker-registry on {registry.addr} with "
          f"htpasswd auth (the test registry's users), over loopback. random: AES-CTR bytes (incompressible); "
          f"text: repeated log lines (gzip shrinks them ~100x). Each image is built, untimed, right before its "
          f"push and removed after. Peak RSS is the client process's: berth and `docker push` have the daemon "
          f"or service do the work on Docker and Podman; on containerd berth reads the content store and uploads in its own "
          f"process, as do `podman push`, ctr and skopeo. containerd rows: the docker image is moved into "
          f"containerd (skopeo to an OCI layout, gzip, then `ctr images import`), untimed, so its layer is already "
          f"compressed there, as in an image berth's containerd builder made.")
    rows = []
    for engine in args.engines:
        for kind in ("random", "text"):
            tool_list = tools(engine)
            results = {label: [] for label, _ in tool_list}
            for i in range(args.runs):
                n = len(tool_list)
                for label, make in tool_list[i % n:] + tool_list[:i % n]:
                    tag, cmd = make(kind)
                    make_image(engine, kind, tag)
                    try:
                        secs, rss, _ = measure(cmd, cwd=tmp, env=s.env)
                    finally:
                        remove(engine, tag)
                    results[label].append((secs, rss))
            base = median([r[0] for r in results[tool_list[0][0]]])
            for label, _ in tool_list:
                secs = [r[0] for r in results[label]]
                m = median(secs)
                rows.append((engine, kind, label, fmt(m), len(secs), f"{args.mb / m:.0f}",
                             fmt(max(r[1] for r in results[label]), 1), f"{m / base:.2f}x"))
    print(f"\n**Pushing one {args.mb} MB layer**\n")
    print(md_table(["engine", "layer", "tool", "median s", "runs", "MB/s", "peak RSS MiB", "vs berth"], rows))
