#!/usr/bin/env python3
"""Side-by-side benchmarks of berth against the tool a user would otherwise run.

    python3 bench/bench.py name [--runs 7] [--specs 100]
    python3 bench/bench.py exists [--runs 5] [--specs 100]     (needs scripts/env/up.sh)

Each comparison runs both tools on the same inputs in one run on this machine and prints a table of medians,
peak RSS and the ratio. berth is the release binary (built here with `cargo build --release -p berth-cli`);
flytekit comes from the venv that scripts/flytekit-corpus/regen.sh sets up ($FLYTEKIT_PYTHON overrides).
Nothing here is a test: no thresholds, just numbers.
"""

import argparse
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


def run_measured(cmd, cwd=None, env=None):
    """Runs cmd, returns (seconds, peak RSS in MiB, stdout)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.communicate()
    elapsed = time.perf_counter() - start
    # wait4 already happened inside communicate(); resource usage of the child comes from RUSAGE_CHILDREN deltas,
    # which is unreliable across several children, so measure RSS with /proc via a second, dedicated run below.
    if proc.returncode != 0:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{err.decode(errors='replace')}")
    return elapsed, out.decode()


def peak_rss_mib(cmd, cwd=None, env=None, ok_codes=(0,)):
    """Peak RSS of one run of cmd, from wait4's rusage (ru_maxrss is in KiB on Linux)."""
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) not in ok_codes:
        sys.exit(f"command failed: {' '.join(map(str, cmd))}")
    return usage.ru_maxrss / 1024


def berth_binary():
    subprocess.run(["cargo", "build", "--release", "--quiet", "-p", "berth-cli"], cwd=REPO, check=True)
    return REPO / "target" / "release" / "berth"


def flytekit_python():
    py = os.environ.get("FLYTEKIT_PYTHON")
    if py:
        return py
    # regen.sh creates the venv on first use; `--specs` with no files is not allowed, so ask it for one spec.
    probe = REPO / "tests" / "corpus" / "cases" / "01-minimal" / "spec.yaml"
    subprocess.run(["bash", str(REPO / "scripts/flytekit-corpus/regen.sh"), "--specs", str(probe)],
                   check=True, stdout=subprocess.DEVNULL)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.environ["HOME"], ".cache")
    return os.path.join(cache, "berth", "flytekit-venv", "bin", "python")


def make_specs(root: Path, count: int):
    """count specs of the usual shapes: packages and env, some with requirements and copied files."""
    (root / "requirements.txt").write_text("pandas==2.2.3\nnumpy<2\n")
    (root / "conf").mkdir()
    for i in range(20):
        (root / "conf" / f"settings-{i}.toml").write_text(f"value = {i}\n" * 50)
    paths = []
    for i in range(count):
        lines = [f"name: task-{i}", "registry: 127.0.0.1:5000/bench", 'python_version: "3.11"',
                 f"packages: [\"scikit-learn=={i % 7}.0\", requests, \"pydantic>=2\"]",
                 f"env: {{TASK: \"{i}\", LEVEL: info, RETRIES: {i % 5}}}",
                 "apt_packages: [git, curl]"]
        if i % 3 == 0:
            lines.append("requirements: requirements.txt")
        if i % 4 == 0:
            lines.append("copy: [conf]")
        path = root / f"spec-{i:03}.yaml"
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


FLYTEKIT_LOOP = """
import sys, time
sys.path.insert(0, sys.argv[1])
import flytekit, tags
start = time.perf_counter()
for spec in sys.argv[2:]:
    tags.compute(spec)
print(time.perf_counter() - start)
"""


def table(title, rows):
    print(f"\n{title}")
    print(f"{'tool':<54} {'median s':>10} {'peak MiB':>9} {'vs berth':>9}")
    base = rows[0][1]
    for name, median, rss in rows:
        peak = "-" if rss != rss else f"{rss:.1f}"
        print(f"{name:<54} {median:>10.3f} {peak:>9} {median / base:>8.1f}x")


def bench_name(args):
    berth = berth_binary()
    py = flytekit_python()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        specs = make_specs(root, args.specs)
        rel = [p.name for p in specs]
        berth_cmd = [str(berth), "name", *rel]
        flyte_cmd = [py, str(REPO / "scripts/flytekit-corpus/tags.py"), "--specs", *rel]
        env = dict(os.environ, BERTH_CACHE_DIR=str(root / "cache"))
        # Same answers first: a benchmark of different work would be meaningless.
        _, ours = run_measured(berth_cmd, cwd=root, env=env)
        _, theirs = run_measured(flyte_cmd, cwd=root)
        if ours.split() != theirs.split():
            sys.exit("berth and flytekit disagree on the names; fix that before timing")
        times = {"berth": [], "flytekit": []}
        for _ in range(args.runs):
            times["berth"].append(run_measured(berth_cmd, cwd=root, env=env)[0])
            times["flytekit"].append(run_measured(flyte_cmd, cwd=root)[0])
        loop_cmd = [py, "-c", FLYTEKIT_LOOP, str(REPO / "scripts/flytekit-corpus"), *rel]
        loop = statistics.median(float(run_measured(loop_cmd, cwd=root)[1].split()[-1]) for _ in range(args.runs))
        rows = [
            (f"berth name ({args.specs} specs)", statistics.median(times["berth"]), peak_rss_mib(berth_cmd, root, env)),
            (f"flytekit ImageSpec(...).image_name() x{args.specs}, 1 process", statistics.median(times["flytekit"]),
             peak_rss_mib(flyte_cmd, root)),
            (f"  of which the {args.specs} tags, after `import flytekit`", loop, float("nan")),
        ]
        print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores, {platform.platform()}")
        print(f"runs: {args.runs} per tool, alternating; names checked equal before timing")
        table("Naming", rows)


FLYTEKIT_EXIST = """
import sys, time
sys.path.insert(0, sys.argv[1])
import flytekit, tags
start = time.perf_counter()
answers = [tags.load_spec(spec).exist() for spec in sys.argv[2:]]
print(time.perf_counter() - start, sum(1 for a in answers if a), sum(1 for a in answers if a is None))
"""


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
    return values


def bench_exists(args):
    berth = berth_binary()
    py = flytekit_python()
    env_vars = test_env()
    registry = env_vars["BERTH_TEST_REGISTRY"]
    user = env_vars["BERTH_TEST_REGISTRY_USER"]
    password = open(env_vars["BERTH_TEST_REGISTRY_PASSWORD_FILE"]).read().strip()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        config = root / "docker-config"
        env = dict(os.environ, DOCKER_CONFIG=str(config), BERTH_CACHE_DIR=str(root / "cache"))
        subprocess.run([str(berth), "login", registry, "-u", user, "--password-stdin"], input=password.encode(),
                       env=env, check=True, stderr=subprocess.DEVNULL)
        run_id = f"{os.getpid()}-{int(time.time())}"
        specs = []
        for i in range(args.specs):
            path = root / f"spec-{i:03}.yaml"
            path.write_text(f"name: exists-{run_id}-{i}\nregistry: {registry}/bench\npackages: [numpy]\n")
            specs.append(path.name)
        names = subprocess.run([str(berth), "name", *specs], cwd=root, env=env, check=True,
                               capture_output=True, text=True).stdout.split()
        # Half of them present: copy the busybox fixture to those names.
        for name in names[::2]:
            subprocess.run(["skopeo", "copy", "--quiet", "--src-tls-verify=false", "--dest-tls-verify=false",
                            "--src-creds", f"{user}:{password}", "--dest-creds", f"{user}:{password}",
                            f"docker://{env_vars['BERTH_TEST_BUSYBOX_IMAGE']}", f"docker://{name}"], check=True)
        berth_cmd = [str(berth), "exists", *specs]
        ten = specs[:10]
        flyte_cmd = [py, "-c", FLYTEKIT_EXIST, str(REPO / "scripts/flytekit-corpus"), *ten]

        def berth_once():
            start = time.perf_counter()
            proc = subprocess.run(berth_cmd, cwd=root, env=env, capture_output=True, text=True)
            elapsed = time.perf_counter() - start
            present = proc.stdout.count("\tpresent\t")
            if proc.returncode not in (0, 1) or present != len(names[::2]):
                sys.exit(f"berth exists: status {proc.returncode}, {present} present\n{proc.stderr}")
            return elapsed

        def flytekit_once():
            # flytekit's own timing of the checks, after its import, so its start-up is not counted against it.
            out = subprocess.run(flyte_cmd, cwd=root, env=env, capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"flytekit exist() failed:\n{out.stderr}")
            seconds, present, unknown = out.stdout.split()
            if int(unknown) or int(present) != len(ten[::2]):
                sys.exit(f"flytekit: {present} present, {unknown} unknown of 10 (want 5 present):\n{out.stderr}")
            return float(seconds)

        def skopeo_once():
            start = time.perf_counter()
            for name in names:
                subprocess.run(["skopeo", "inspect", "--tls-verify=false", "--creds", f"{user}:{password}",
                                "--format", "{{.Digest}}", f"docker://{name}"], capture_output=True)
            return time.perf_counter() - start

        berth_times, flyte_times, skopeo_times = [], [], []
        for _ in range(args.runs):
            berth_times.append(berth_once())
            flyte_times.append(flytekit_once())
        for _ in range(max(1, args.runs // 3)):
            skopeo_times.append(skopeo_once())
        print(f"machine: {platform.node()} {platform.machine()}, {os.cpu_count()} cores; registry {registry} "
              f"(docker-registry, htpasswd); {args.specs} specs, half present")
        table("Existence checks", [
            (f"berth exists ({args.specs} specs)", statistics.median(berth_times),
             peak_rss_mib(berth_cmd, root, env, ok_codes=(0, 1))),
            ("flytekit ImageSpec.exist() (10 specs, after import)", statistics.median(flyte_times), float("nan")),
            (f"skopeo inspect one by one ({args.specs} specs)", statistics.median(skopeo_times), float("nan")),
        ])


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="what", required=True)
    name = sub.add_parser("name", help="berth name vs flytekit computing the same tags")
    name.add_argument("--runs", type=int, default=7)
    name.add_argument("--specs", type=int, default=100)
    exists = sub.add_parser("exists", help="berth exists vs flytekit's exist() and skopeo, half present")
    exists.add_argument("--runs", type=int, default=5)
    exists.add_argument("--specs", type=int, default=100)
    args = p.parse_args()
    {"name": bench_name, "exists": bench_exists}[args.what](args)


if __name__ == "__main__":
    main()
