"""`scale`: `berth build` of a project of 50 images that are all in the registry already (check all, build none,
write berth.lock), against flytekit checking the same 50 ImageSpecs with exist()."""

import json
import os
import tempfile
import time
from pathlib import Path

from common import REPO, alternate, flytekit_python, fmt, machine_line, md_table, measure, median, sh
from build import Setup, copy_fixture_as

FLYTEKIT_EXIST = """
import sys, time
sys.path.insert(0, sys.argv[1])
import flytekit, tags
start = time.perf_counter()
specs = [tags.load_spec(path) for path in sys.argv[2:]]
answers = [spec.exist() for spec in specs]
print(time.perf_counter() - start, sum(1 for a in answers if a), sum(1 for a in answers if a is None))
"""


def bench_scale(args):
    py = flytekit_python()
    with tempfile.TemporaryDirectory(prefix="berth-bench-scale-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        tenv = s.tenv
        registry, python = tenv["BERTH_TEST_REGISTRY"], tenv["BERTH_TEST_PYTHON_IMAGE"]
        project = tmp / "project"
        (project / "specs").mkdir(parents=True)
        run_id = f"{os.getpid()}-{int(time.time())}"
        images, tasks, files = [], [], []
        for i in range(args.images):
            spec = project / "specs" / f"task{i:02}.yaml"
            spec.write_text(f"name: scale-{run_id}-{i:02}\nregistry: {registry}/bench\nbase_image: {python}\n"
                            f"python_exec: /usr/bin/python3\nbuilder_options: {{install_flytekit: false}}\n"
                            f"env: {{TASK_INDEX: \"{i}\"}}\n")
            images.append(f"  task{i:02}: specs/{spec.name}")
            tasks.append(f"  task_{i:02}: task{i:02}")
            files.append(f"specs/{spec.name}")
        (project / "berth.yaml").write_text(f"engine: docker\ndefault_image: {python}\nimages:\n" + "\n".join(images)
                                            + "\ntasks:\n" + "\n".join(tasks) + "\n")
        names = sh([s.berth, "name", *files], cwd=project, env=s.env, capture_output=True, text=True).stdout.split()
        theirs = sh([py, REPO / "scripts/flytekit-corpus/tags.py", "--specs", *files], cwd=project,
                    capture_output=True, text=True).stdout.split()
        if names != theirs:
            raise SystemExit("berth and flytekit disagree on the names; fix that before timing")
        # Present in the registry: the python fixture copied under each name (registry-side copies: the check
        # and the lock only read manifests, so what the image holds does not matter).
        prepared = copy_fixture_as(s, python, names)
        berth_cmd = [s.berth, "build", "-q"]
        flyte_cmd = [py, "-c", FLYTEKIT_EXIST, REPO / "scripts/flytekit-corpus", *files]

        def berth_once():
            (project / "berth.lock").unlink(missing_ok=True)
            result = measure(berth_cmd, cwd=project, env=s.env)
            lock = json.loads((project / "berth.lock").read_text())
            if len(lock["tasks"]) != args.images:
                raise SystemExit(f"berth.lock has {len(lock['tasks'])} tasks, want {args.images}")
            return result

        def flytekit_once():
            secs, rss, out = measure(flyte_cmd, cwd=project, env=s.env)
            inner, present, unknown = out.split()
            if int(present) != args.images:
                raise SystemExit(f"flytekit: {present} of {args.images} present, {unknown} unknown")
            return secs, rss, float(inner)

        berth_once()  # warm-up: the engine connection and the registry's first token
        results = alternate(args.runs, [("berth", berth_once), ("flytekit", flytekit_once)])
        second = measure(berth_cmd, cwd=project, env=s.env)  # lock already there and current
        b = [r[0] for r in results["berth"]]
        f = [r[0] for r in results["flytekit"]]
        fi = [r[2] for r in results["flytekit"]]
        base = median(b)
        print(machine_line())
        print(f"A berth.yaml with {args.images} images (bookworm-python base, distinct `env`) and {args.images} tasks, "
              f"every image already in {registry} (put there by `skopeo copy` of the python fixture, "
              f"{prepared:.0f} s, not timed); names checked equal to flytekit's first. berth: `berth build` in the "
              f"project (names all, asks the registry about all, builds none, writes berth.lock; the lock is "
              f"deleted before each run). flytekit: `ImageSpec.exist()` for each spec in one process, through dockerd. {args.runs} runs each, alternating.")
        print(f"\n**A {args.images}-image project, all present**\n")
        print(md_table(["tool", "median s", "runs", "peak RSS MiB", "vs berth"], [
            (f"`berth build` (project of {args.images}, all present, writes berth.lock)", fmt(base), len(b),
             fmt(max(r[1] for r in results["berth"]), 1), "1.00x"),
            ("  the same with berth.lock already current", fmt(second[0]), 1, fmt(second[1], 1),
             f"{second[0] / base:.2f}x"),
            (f"flytekit: load {args.images} specs and `exist()` each, fresh process", fmt(median(f)), len(f),
             fmt(max(r[1] for r in results["flytekit"]), 1), f"{median(f) / base:.2f}x"),
            ("  of which the loads and checks, after `import flytekit`", fmt(median(fi)), len(fi), "-",
             f"{median(fi) / base:.2f}x"),
        ]))
