"""Helpers shared by the benchmarks: measured runs (wall time and peak RSS from wait4), berth and flytekit,
the test environment, page-cache drops and markdown tables."""

import datetime
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
# Generated inputs that are expensive to make (the 1 GB tree) live here between runs.
CACHE = Path(os.environ.get("BERTH_BENCH_CACHE", "/var/tmp/berth-bench"))


class Failed(Exception):
    pass


def measure(cmd, cwd=None, env=None, ok_codes=(0,), stdin=None, with_stderr=False):
    """Runs cmd once; returns (seconds, peak RSS in MiB, stdout), and its stderr too with `with_stderr`.

    The peak RSS is ru_maxrss (from wait4) of the command, measured by GNU time, which starts it from its own small
    process: a child forked (vfork) from this Python process would inherit Python's high-water mark across exec
    and report at least this script's own size. Wall time includes time's fork and exec (about a millisecond)."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile(mode="r") as rss_file:
        start = time.perf_counter()
        proc = subprocess.Popen(["/usr/bin/time", "-f", "%M", "-o", rss_file.name, *[str(c) for c in cmd]],
                                cwd=cwd, env=env, stdout=out, stderr=err,
                                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL)
        if stdin is not None:
            proc.stdin.write(stdin)
            proc.stdin.close()
        proc.wait()
        elapsed = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        lines = rss_file.read().split()
        rss = int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else float("nan")
    if proc.returncode not in ok_codes:
        raise Failed(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{stderr[-3000:]}")
    if with_stderr:
        return elapsed, rss, stdout, stderr
    return elapsed, rss, stdout


def run_measured(cmd, cwd=None, env=None):
    """Runs cmd, returns (seconds, stdout)."""
    seconds, _, out = measure(cmd, cwd, env)
    return seconds, out


def peak_rss_mib(cmd, cwd=None, env=None, ok_codes=(0,)):
    """Peak RSS of one run of cmd, from wait4's rusage."""
    return measure(cmd, cwd, env, ok_codes)[1]


def sh(cmd, **kw):
    """Runs a preparation command (not timed); fails loudly, with its error output."""
    check = kw.pop("check", True)
    proc = subprocess.run([str(c) for c in cmd], **kw)
    if check and proc.returncode != 0:
        err = proc.stderr.decode(errors="replace") if isinstance(proc.stderr, bytes) else (proc.stderr or "")
        raise Failed(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err[-3000:]}")
    return proc


def berth_binary():
    """The release binary, built here, copied aside so that a rebuild by someone else mid-run cannot swap it."""
    if os.environ.get("BERTH_BENCH_BIN"):  # an already built release binary (skips the cargo build)
        return Path(os.environ["BERTH_BENCH_BIN"])
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "berth-cli"], cwd=REPO, check=True)
    CACHE.mkdir(parents=True, exist_ok=True)
    copy = CACHE / "berth"
    shutil.copy2(REPO / "target" / "release" / "berth", copy)
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "crates", "Cargo.toml",
                            "Cargo.lock"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    print(f"berth: release build of {head.strip()}" + (" plus uncommitted changes in crates/" if dirty else ""))
    os.environ["BERTH_BENCH_BIN"] = str(copy)  # the same binary for every benchmark of this run
    return copy


def flytekit_python():
    py = os.environ.get("FLYTEKIT_PYTHON")
    if py:
        return py
    if os.path.exists("/opt/flytekit-venv/bin/python"):  # scripts/env/up.sh's venv
        return "/opt/flytekit-venv/bin/python"
    # regen.sh creates the venv on first use; `--specs` with no files is not allowed, so ask it for one spec.
    probe = REPO / "tests" / "corpus" / "cases" / "01-minimal" / "spec.yaml"
    subprocess.run(["bash", str(REPO / "scripts/flytekit-corpus/regen.sh"), "--specs", str(probe)],
                   check=True, stdout=subprocess.DEVNULL)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    return os.path.join(cache, "berth", "flytekit-venv", "bin", "python")


def test_env():
    """The variables scripts/env/up.sh writes (registry address, user, password file, fixture images)."""
    path = os.environ.get("BERTH_TEST_ENV_FILE", "/var/lib/berth-env/env.sh")
    if not os.path.exists(path):
        sys.exit(f"{path} is missing: run scripts/env/up.sh first")
    values = {}
    for line in open(path):
        line = line.strip()
        if line.startswith("export "):
            key, _, value = line[len("export "):].partition("=")
            values[key] = value.strip("'\"")
    values["password"] = open(values["BERTH_TEST_REGISTRY_PASSWORD_FILE"]).read().strip()
    return values


def berth_login(berth, env, tenv):
    """Logs berth (and so Docker, which reads the same file) in to the test registry with env's DOCKER_CONFIG."""
    sh([berth, "login", tenv["BERTH_TEST_REGISTRY"], "-u", tenv["BERTH_TEST_REGISTRY_USER"], "--password-stdin"],
       input=tenv["password"].encode(), env=env, stderr=subprocess.DEVNULL, stdout=subprocess.DEVNULL)


def drop_caches():
    """Empties the page cache (root only), so the next read comes from the disk."""
    subprocess.run(["sync"], check=True)
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError as e:
        sys.exit(f"cannot drop the page cache ({e}): the cold runs need root")


def machine_line():
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = os.getloadavg()[0]
    return (f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {mem:.0f} GiB, "
            f"{platform.platform()}; {datetime.date.today().isoformat()}; load average {load:.1f} at start "
            f"(the machine is shared: other builds may run during the benchmark, so compare rows of one table, "
            f"which ran side by side with the tools alternating)")


def median(values):
    return statistics.median(values) if values else float("nan")


def fmt(value, digits=3):
    if value != value:  # NaN
        return "-"
    return f"{value:.{digits}f}"


def md_table(headers, rows):
    """A markdown table as a string."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def timing_table(title, rows, base=0, note=None):
    """Prints rows of (label, seconds list or median, peak RSS MiB list or value) as a markdown table, with each
    row's median relative to row `base` (berth)."""
    print(f"\n**{title}**\n")
    norm = []
    for label, secs, rss in rows:
        m = median(secs) if isinstance(secs, list) else secs
        r = max(rss) if isinstance(rss, list) and rss else (rss if not isinstance(rss, list) else float("nan"))
        n = len(secs) if isinstance(secs, list) else None
        norm.append((label, m, r, n))
    ref = norm[base][1]
    out = []
    for label, m, r, n in norm:
        ratio = "-" if m != m or ref != ref or ref == 0 else f"{m / ref:.2f}x"
        out.append((label, fmt(m), "-" if n is None else n, fmt(r, 1), ratio))
    print(md_table(["tool", "median s", "runs", "peak RSS MiB", "vs first row"], out))
    if note:
        print(f"\n{note}")


def alternate(runs, tools):
    """Runs each tool's callable once per round, rotating which goes first, and collects their results."""
    results = {name: [] for name, _ in tools}
    for i in range(runs):
        order = tools[i % len(tools):] + tools[:i % len(tools)]
        for name, fn in order:
            results[name].append(fn())
    return results
