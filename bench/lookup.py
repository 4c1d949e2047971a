"""`name` and `exists`: berth against flytekit (and skopeo) for naming and registry checks."""

import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, berth_binary, flytekit_python, machine_line, peak_rss_mib, run_measured, test_env


def table(title, rows):
    """Prints (label, median, peak RSS) rows as a markdown table, each median relative to the first row's."""
    print(f"\n**{title}**\n")
    print("| tool | median s | peak MiB | vs berth |")
    print("|---|---|---|---|")
    base = rows[0][1]
    for name, median, rss in rows:
        peak = "-" if rss != rss else f"{rss:.1f}"
        print(f"| {name} | {median:.3f} | {peak} | {median / base:.1f}x |")


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
        print(machine_line())
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


def bench_exists(args):
    berth = berth_binary()
    py = flytekit_python()
    env_vars = test_env()
    registry = env_vars["BERTH_TEST_REGISTRY"]
    user = env_vars["BERTH_TEST_REGISTRY_USER"]
    password = env_vars["password"]
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
        print(machine_line())
        print(f"registry {registry} (docker-registry, htpasswd); {args.specs} specs, half present")
        table("Existence checks", [
            (f"berth exists ({args.specs} specs)", statistics.median(berth_times),
             peak_rss_mib(berth_cmd, root, env, ok_codes=(0, 1))),
            ("flytekit ImageSpec.exist() (10 specs, after import)", statistics.median(flyte_times), float("nan")),
            (f"skopeo inspect one by one ({args.specs} specs)", statistics.median(skopeo_times), float("nan")),
        ])
