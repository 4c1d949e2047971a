"""`push`: berth push against docker push, podman push, skopeo copy and ctr images push, side by side, to a
throwaway registry with the test registry's credentials: images with one 200 MB layer, random (incompressible) or
text (compressible), and a 1.5 GB image shaped like a PyTorch one (a few large layers of mixed content, many small
ones). Each shape also gets the physical limit: an uncompressed monolithic upload of the same bytes (curl, one
POST and one PUT per layer)."""

import os
import pwd
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

# another engineer's push benchmark may hold the default one: BERTH_BENCH_PUSH_PORT picks another
PORT = int(os.environ.get("BERTH_BENCH_PUSH_PORT", "5055"))
HTPASSWD = "/var/lib/berth-env/registry/htpasswd"


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


def mixed(path, mb, seed):
    """A file like shared libraries and wheels: 64 KiB runs of random bytes (a third) and of repeated code-like
    text (two thirds), so gzip shrinks it about 3x, as it does shared libraries."""
    if path.exists() and path.stat().st_size == mb * 10**6:
        return path
    random = payload("random", 200)
    text = payload("text", 200)
    tmp = path.with_suffix(".tmp")
    run = 64 * 1024
    with open(random, "rb") as r, open(text, "rb") as t, open(tmp, "wb") as out:
        left, i = mb * 10**6, seed
        while left:
            src = r if i % 3 == 0 else t
            chunk = src.read(min(run, left))
            if len(chunk) < min(run, left):
                src.seek(0)
                continue
            out.write(chunk)
            left -= len(chunk)
            i += 1
    tmp.rename(path)
    return path


def torch_layers(total_mb):
    """The layer files of the PyTorch-shaped image, scaled to total_mb: three large layers (torch and CUDA
    libraries: mixed; model-like weights: random) and 24 small ones (Python packages and config: text or mixed)."""
    scale = total_mb / 1500
    sizes = [("mixed", 640), ("mixed", 400), ("random", 250)]
    sizes += [("text" if i % 2 else "mixed", [2, 5, 9, 13][i % 4]) for i in range(24)]
    files = []
    for i, (kind, mb) in enumerate(sizes):
        mb = max(1, round(mb * scale))
        path = CACHE / f"push-torch-{i:02d}-{kind}-{mb}mb.bin"
        if kind == "mixed":
            mixed(path, mb, i)
        else:
            source = payload(kind, 200)
            if not (path.exists() and path.stat().st_size == mb * 10**6):
                with open(source, "rb") as src, open(path, "wb") as dst:
                    left = mb * 10**6
                    dst.write(f"torch layer {i}".encode().ljust(64, b"\n"))
                    left -= 64
                    while left:
                        src.seek(64)
                        chunk = src.read(min(left, 199 * 10**6))
                        dst.write(chunk)
                        left -= len(chunk)
        files.append(path)
    return files


def monolithic_script(tmp, registry_addr, user, password, files, tag):
    """A shell script that uploads each file uncompressed as one blob (POST, then one PUT), like the best a client
    can do with the same bytes; returns its path."""
    lines = ["set -e"]
    repo = tag.split("/", 1)[1].split(":")[0]
    for f in files:
        digest = sha256_of(f)
        lines.append(
            f"loc=$(curl -sS -u {user}:{password} -X POST -D - -o /dev/null "
            f"http://{registry_addr}/v2/{repo}/blobs/uploads/ | tr -d '\\r' | sed -n 's/^[Ll]ocation: //p')")
        lines.append(f"case $loc in http*) ;; *) loc=http://{registry_addr}$loc;; esac")
        lines.append(f"curl -sSf -u {user}:{password} -H 'Content-Type: application/octet-stream' "
                     f"-T {f} \"$loc&digest={digest}\" -o /dev/null")
    script = tmp / f"upload-{repo.replace('/', '_')}.sh"
    script.write_text("\n".join(lines) + "\n")
    return script


def sha256_of(path):
    """The file's sha256, cached beside it."""
    cached = path.with_suffix(".sha256")
    if cached.exists() and cached.stat().st_mtime >= path.stat().st_mtime:
        return cached.read_text().strip()
    digest = "sha256:" + sh(["sha256sum", path], capture_output=True, text=True).stdout.split()[0]
    cached.write_text(digest)
    return digest


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

    def restart(self, tmp, htpasswd):
        """An empty registry on the same address: a push after it cannot skip or mount anything."""
        self.close()
        self.__init__(tmp, htpasswd)


class Rootless:
    """The rootless Podman test user (scripts/env/up.sh's `BERTH_TEST_PODMAN_ROOTLESS_USER`), for the
    `podman-rootless` rows: its commands run as that user, as tests/src/users.rs runs them (setpriv, a clean
    environment, its own `XDG_RUNTIME_DIR`, where berth finds the user's Podman service), on the user's own
    store, with berth's cache and credentials in a folder of the run that the user owns."""

    def __init__(self, tenv, tmp):
        user = pwd.getpwnam(tenv["BERTH_TEST_PODMAN_ROOTLESS_USER"])
        self.uid, self.gid, self.name, self.home = user.pw_uid, user.pw_gid, user.pw_name, user.pw_dir
        os.chmod(tmp, 0o755)  # the user reads the specs and build contexts here
        self.dir = tmp / "rootless"
        self.dir.mkdir()
        os.chown(self.dir, self.uid, self.gid)
        self.auth = str(self.dir / "docker-config" / "config.json")

    def cmd(self, cmd):
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "env", "-i",
                f"HOME={self.home}", f"USER={self.name}", "PATH=/usr/local/bin:/usr/bin:/bin",
                f"XDG_RUNTIME_DIR=/run/user/{self.uid}", f"DOCKER_CONFIG={self.dir / 'docker-config'}",
                f"BERTH_CACHE_DIR={self.dir / 'cache'}", *cmd]

    def login(self, berth, tenv, registry_addr):
        """Logs the user in to the benchmark's registry and the test registry (the busybox fixture's)."""
        for addr in (registry_addr, tenv["BERTH_TEST_REGISTRY"]):
            sh(self.cmd([berth, "login", addr, "-u", tenv["BERTH_TEST_REGISTRY_USER"], "--password-stdin"]),
               input=tenv["password"].encode(), capture_output=True)


def bench_push(args):
    payloads = {kind: payload(kind, args.mb) for kind in ("random", "text")}
    with tempfile.TemporaryDirectory(dir=CACHE, prefix="push-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        registry = Registry(tmp, HTPASSWD)
        try:
            berth_login(s.berth, s.env, dict(s.tenv, BERTH_TEST_REGISTRY=registry.addr))
            if "podman-rootless" in args.engines:
                s.rootless = Rootless(s.tenv, tmp)
                s.rootless.login(s.berth, s.tenv, registry.addr)
            run(args, s, registry, payloads, tmp)
        finally:
            registry.close()


def as_user(s, engine, cmd):
    """cmd as the user whose engine `engine` is: the rootless user for `podman-rootless`, else this one."""
    return s.rootless.cmd(cmd) if engine == "podman-rootless" else cmd


def podman_cli(engine):
    """The CLI that builds, tags and removes `engine`'s images (Podman's runs as the rootless user for its rows)."""
    return "docker" if engine in ("docker", "containerd") else "podman"


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
        build = build_command(engine, tag, ctx)
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

    def build_command(engine, tag, ctx):
        if engine == "docker" or engine == "containerd":
            return ["docker", "build", "-q", "-t", tag, ctx]
        auth = s.rootless.auth if engine == "podman-rootless" else s.auth
        return as_user(s, engine, ["podman", "build", "-q", "--format", "docker", "--authfile", auth, "-t", tag, ctx])

    def oci_layout(tag):
        return tmp / ("oci-" + tag.replace("/", "_").replace(":", "_"))

    def remove(engine, tag):
        if engine == "containerd":
            subprocess.run(["ctr", "-n", "default", "images", "rm", tag], capture_output=True)
            shutil.rmtree(oci_layout(tag), ignore_errors=True)
        subprocess.run(as_user(s, engine, [podman_cli(engine), "rmi", "-f", tag]), capture_output=True)

    def tool_closures(engine):
        """Every tool's row for `engine`, and last the earlier berth's (None without `--compare-bin`)."""
        rootless = engine == "podman-rootless"
        flag = "podman" if rootless else engine

        def berth_push(kind, via=None, binary=None):
            """berth's own push (`-v`: it says whether it read the storage or the export, checked after it)."""
            name = f"berth-{engine}-{kind}-{next(counter)}"
            spec = tmp / f"{name}.yaml"
            spec.write_text(f"name: {name}\nregistry: {registry.addr}/bench\npackages: [numpy]\n")
            tag = sh([s.berth, "name", spec.name], cwd=tmp, env=s.env, capture_output=True, text=True).stdout.strip()
            extra = ["--push-via", via] if via else []
            said = f"pushing from {flag}'s export" if via == "export" else f"from {flag}'s storage"
            if engine == "containerd":  # one way only: the content store
                said = None
            return tag, as_user(s, engine, [binary or s.berth, "-v", "push", *extra, "--engine", flag, spec.name]), said

        def berth_export(kind):
            """berth's push from the engine's export, as before it read the storage (`--push-via export`)."""
            return berth_push(kind, "export")

        def cli_push(kind):
            tag = f"{registry.addr}/bench/{engine}-cli-{kind}-{next(counter)}:1"
            if engine == "docker":
                return tag, ["docker", "push", "-q", tag]
            if engine == "containerd":
                return tag, ["ctr", "-n", "default", "images", "push", "--plain-http", "--user",
                             f"{user}:{password}", tag]
            auth = s.rootless.auth if rootless else s.auth
            return tag, as_user(s, engine, ["podman", "push", "--quiet", "--tls-verify=false", "--authfile", auth,
                                            tag])

        def skopeo_layout(kind):
            tag = f"{registry.addr}/bench/skopeo-oci-{kind}-{next(counter)}:1"
            return tag, ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                         f"{user}:{password}", f"oci:{oci_layout(tag)}", f"docker://{tag}"]

        def skopeo(kind):
            tag = f"{registry.addr}/bench/skopeo-{engine}-{kind}-{next(counter)}:1"
            source = f"docker-daemon:{tag}" if engine in ("docker", "containerd") else f"containers-storage:{tag}"
            return tag, as_user(s, engine, ["skopeo", "copy", "--quiet", "--dest-tls-verify=false", "--dest-creds",
                                            f"{user}:{password}", source, f"docker://{tag}"])

        def berth_earlier(kind):
            """The same push by another berth binary (`--compare-bin`), e.g. a build before a change."""
            return berth_push(kind, binary=args.compare_bin)

        earlier = ("", berth_earlier if args.compare_bin else None)
        return tool_rows(engine, rootless, berth_push, berth_export, cli_push, skopeo_layout, skopeo) + [earlier]

    def tool_rows(engine, rootless, berth_push, berth_export, cli_push, skopeo_layout, skopeo):
        if engine == "containerd":
            return [("`berth push --engine containerd` (berth's own push from the content store)", berth_push),
                    ("`ctr images push` (containerd's CLI, same image)", cli_push),
                    ("`skopeo copy oci:` (the same gzip blobs from an OCI layout)", skopeo_layout),
                    ("`skopeo copy docker-daemon:` (compresses while it uploads, as in the docker rows)", skopeo)]
        if rootless:
            return [("`berth push --engine podman` as the user (reads the user's storage)", berth_push),
                    ("`berth push --engine podman --push-via export` as the user (the user's service's export)",
                     berth_export),
                    ("`podman push` as the user", cli_push),
                    ("`skopeo copy containers-storage:` as the user", skopeo)]
        if engine == "podman":
            def remote_push(kind):
                tag, cmd = cli_push(kind)
                return tag, ["podman", "--remote", "--url", "unix:///run/podman/podman.sock", *cmd[1:]]

            return [("`berth push --engine podman` (reads the rootful storage)", berth_push),
                    ("`berth push --engine podman --push-via export` (the service's export)", berth_export),
                    ("`podman push`", cli_push),
                    ("`podman --remote push` (through the same service)", remote_push),
                    ("`skopeo copy containers-storage:`", skopeo)]
        return [(f"`berth push --engine {engine}` (reads dockerd's storage)", berth_push),
                (f"`berth push --engine {engine} --push-via export` (`docker save`'s stream)", berth_export),
                (f"`{engine} push`", cli_push),
                ("`skopeo copy docker-daemon:`", skopeo)]

    def tools(engine):
        """The rows of `engine`: berth's own push first."""
        rows = tool_closures(engine)
        if args.compare_bin:
            rows.insert(1, (f"{rows[0][0]}, earlier build `{args.compare_label}`", rows.pop()[1]))
        elif rows[-1][1] is None:
            rows.pop()
        if args.storage_only:  # berth's own push (and the earlier build's) only, beside the curl row
            rows = rows[:2] if args.compare_bin else rows[:1]
        return rows

    def build_torch(engine, tag):
        """The PyTorch-shaped image, one COPY per layer file (built once per engine, untimed)."""
        ctx = tmp / "ctx-torch"
        if not ctx.exists():
            ctx.mkdir()
            lines = [f"FROM {busybox}"]
            for f in torch_files:
                os.link(f, ctx / f.name)
                lines.append(f"COPY {f.name} /opt/torch/{f.name}")
            (ctx / "Dockerfile").write_text("\n".join(lines) + "\n")
        sh(build_command(engine, tag, ctx), capture_output=True, env=dict(s.env, DOCKER_BUILDKIT="0"))
        if engine == "containerd":
            to_containerd(tag)

    def retag(engine, source, tag):
        if engine == "containerd":
            sh(["ctr", "-n", "default", "images", "tag", "--force", source, tag], capture_output=True)
            layout = oci_layout(source)
            if layout.exists() and not oci_layout(tag).exists():
                os.symlink(layout, oci_layout(tag))
        sh(as_user(s, engine, [podman_cli(engine), "tag", source, tag]), capture_output=True)

    def untag(engine, tag):
        if engine == "containerd":
            subprocess.run(["ctr", "-n", "default", "images", "rm", tag], capture_output=True)
            if oci_layout(tag).is_symlink():
                oci_layout(tag).unlink()
        subprocess.run(as_user(s, engine, [podman_cli(engine), "rmi", tag]), capture_output=True)

    shapes = [(shape, "") for shape in ("random", "text") if shape in args.shapes]
    if args.torch_mb and "torch" in args.shapes:
        shapes.append(("torch", f"{args.torch_mb} MB in 27 layers (PyTorch-like)"))
        torch_files = torch_layers(args.torch_mb)
    print(machine_line())
    print(f"Each push sends an image to a docker-registry on {registry.addr} with htpasswd auth (the test "
          f"registry's users), over loopback. random: one {args.mb} MB layer of AES-CTR bytes (incompressible); "
          f"text: one of repeated log lines (gzip shrinks them ~100x); both FROM the busybox fixture, built untimed "
          f"right before each push with first bytes new for every push, removed "
          f"after; every push (curl's too) goes to a registry emptied first, so nothing is skipped or mounted. torch: {args.torch_mb} MB in 27 layers on busybox: 640, 400 and 250 MB scaled (two of code-like "
          f"mixed content, gzip ~3x; one random), 24 of 2-13 MB (text or mixed); built once per engine, and pushed "
          f"each time to a registry emptied first. Peak RSS is the client process's. containerd rows: the docker "
          f"image is moved into containerd (skopeo to an OCI layout, gzip, then `ctr images import`), untimed, so "
          f"its layers are already compressed there, as in an image berth's containerd builder made. "
          f"`curl` rows: the same bytes uploaded uncompressed, one POST and PUT per layer (the physical limit). "
          f"podman-rootless rows: every tool (and the untimed builds) runs as the rootless test user, on its store "
          f"and its service. berth's rows run with -v and are checked to have read the storage (or the export, "
          f"with --push-via export) as their label says.")
    rows = []
    for shape, _ in shapes:
        files = torch_files if shape == "torch" else [payloads[shape]]
        limit = []
        for _ in range(args.runs):
            # every push goes to an emptied registry: nothing is skipped, and the disk holds one image at a time
            registry.restart(tmp, HTPASSWD)
            tag = f"{registry.addr}/bench/monolithic-{shape}-{next(counter)}:1"
            script = monolithic_script(tmp, registry.addr, user, password, files, tag)
            limit.append(measure(["sh", script], cwd=tmp, env=s.env)[:2])
        limit_s = median([r[0] for r in limit])
        total_mb = sum(f.stat().st_size for f in files) / 10**6
        rows.append(("-", shape, "`curl` uncompressed monolithic upload of the same bytes", fmt(limit_s),
                     len(limit), f"{total_mb / limit_s:.0f}", fmt(max(r[1] for r in limit), 1), "-", "1.00x"))
        for engine in args.engines:
            tool_list = tools(engine)
            results = {label: [] for label, _ in tool_list}
            source = f"berth-bench/torch-{engine}:1"
            if shape == "torch":
                build_torch(engine, source)
            for i in range(args.runs):
                n = len(tool_list)
                for label, make in tool_list[i % n:] + tool_list[:i % n]:
                    tag, cmd, *said = make(shape)
                    registry.restart(tmp, HTPASSWD)
                    if shape == "torch":
                        retag(engine, source, tag)
                    else:
                        make_image(engine, shape, tag)
                    try:
                        secs, rss, _, stderr = measure(cmd, cwd=tmp, env=s.env, with_stderr=True)
                    finally:
                        untag(engine, tag) if shape == "torch" else remove(engine, tag)
                    if said and said[0] and said[0] not in stderr:  # the row measured another way than its label
                        raise Failed(f"{label} did not say {said[0]!r}:\n{stderr[-2000:]}")
                    results[label].append((secs, rss))
            if shape == "torch":
                remove(engine, source)
            base = median([r[0] for r in results[tool_list[0][0]]])
            for label, _ in tool_list:
                secs = [r[0] for r in results[label]]
                m = median(secs)
                rows.append((engine, shape, label, fmt(m), len(secs), f"{total_mb / m:.0f}",
                             fmt(max(r[1] for r in results[label]), 1), f"{m / base:.2f}x", f"{m / limit_s:.2f}x"))
    print(f"load average at the end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print("\n**Pushing images, side by side**\n")
    print(md_table(["engine", "image", "tool", "median s", "runs", "MB/s", "peak RSS MiB", "vs berth",
                    "vs uncompressed upload"], rows))
