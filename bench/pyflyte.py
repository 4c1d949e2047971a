"""`pyflyte`: `pyflyte package` of a project with 20 ImageSpecs that are all in the registry already, with the berth
plugin (the default builder once the package is installed) against flytekit's own default builder
(`builder="default"`), in the same venv, on the same project, alternating."""

import os
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path

from build import Setup, copy_fixture_as
from common import REPO, alternate, fmt, machine_line, md_table, measure, median, sh

PROJECT = '''
import os

from flytekit import ImageSpec, task, workflow

IMAGES = [
    ImageSpec(
        name=f"pyflyte-{os.environ['BENCH_RUN']}-{i:02}",
        registry=os.environ["BENCH_REGISTRY"],
        base_image=os.environ["BERTH_TEST_PYTHON_IMAGE"],
        python_exec="/usr/bin/python3",
        builder_options={"install_flytekit": False},
        env={"TASK_INDEX": str(i)},
        builder=os.environ.get("BENCH_BUILDER") or None,
    )
    for i in range(int(os.environ["BENCH_IMAGES"]))
]

TASKS = []
for i, image in enumerate(IMAGES):
    def body(x: int) -> int:
        return x + 1

    body.__name__ = body.__qualname__ = f"task_{i:02}"
    globals()[body.__name__] = task(container_image=image)(body)
    TASKS.append(globals()[body.__name__])


@workflow
def everything(x: int = 0) -> int:
    for t in TASKS:
        x = t(x=x)
    return x
'''

NAMES = """
import sys
sys.path.insert(0, sys.argv[1])
from bench_images import wf
print("\\n".join(spec.image_name() for spec in wf.IMAGES))
"""


def venv():
    """The venv scripts/python-test.sh makes (flytekit 1.16.31 and this checkout's package)."""
    path = Path(os.environ.get("BERTH_FLYTEKIT_VENV", "/var/lib/berth-env/flytekit-venv"))
    if not (path / "bin" / "pyflyte").exists():
        raise SystemExit(f"{path} has no pyflyte: run scripts/python-test.sh once (it sets the venv up)")
    return path


def task_images(package: Path):
    from_tar = {}
    with tarfile.open(package) as tar:
        for member in tar.getmembers():
            if member.name.endswith("_1.pb"):  # task templates (2: workflows, 3: launch plans)
                from_tar[member.name] = tar.extractfile(member).read()
    return from_tar


def bench_pyflyte(args):
    bin_dir = venv() / "bin"
    with tempfile.TemporaryDirectory(prefix="berth-bench-pyflyte-") as tmp:
        tmp = Path(tmp)
        s = Setup(tmp)
        tenv = s.tenv
        registry, python = tenv["BERTH_TEST_REGISTRY"], tenv["BERTH_TEST_PYTHON_IMAGE"]
        project = tmp / "project"
        (project / "bench_images").mkdir(parents=True)
        (project / "bench_images" / "__init__.py").write_text("")
        (project / "bench_images" / "wf.py").write_text(PROJECT)
        env = dict(s.env, PATH=f"{bin_dir}:{os.environ['PATH']}", BENCH_RUN=f"{os.getpid()}-{int(time.time())}",
                   BENCH_REGISTRY=f"{registry}/bench", BENCH_IMAGES=str(args.images), BERTH_TEST_PYTHON_IMAGE=python,
                   BERTH_ENGINE="docker", BERTH_BIN=str(s.berth),
                   BERTH_REGISTRY_USERNAME=tenv["BERTH_TEST_REGISTRY_USER"], BERTH_REGISTRY_PASSWORD=tenv["password"])
        names = sh([bin_dir / "python", "-c", NAMES, project], cwd=project, env=env, capture_output=True,
                   text=True).stdout.split()
        if len(names) != args.images:
            raise SystemExit(f"expected {args.images} image names, got {names}")
        # Present in the registry: the python fixture copied under each name (registry-side copies: both builders
        # only ask for the manifest, so what the image holds does not matter).
        prepared = copy_fixture_as(s, python, names)
        # --fast: the images are named from their specs alone (as `pyflyte register` does by default); without it
        # LOADED_MODULES would put this project's files into every image and its name.
        command = [bin_dir / "pyflyte", "--pkgs", "bench_images", "package", "--fast", "--force", "--output",
                   tmp / "out.tgz"]

        def once(builder):
            def run():
                secs, rss, out = measure(command, cwd=project, env=dict(env, BENCH_BUILDER=builder))
                templates = task_images(tmp / "out.tgz")
                if len(templates) != args.images:
                    raise SystemExit(f"{builder or 'berth'}: {len(templates)} task templates, want {args.images}")
                skipped = out.count("found. Skip building")
                if skipped != args.images:
                    raise SystemExit(f"{builder or 'berth'}: {skipped} images found, want {args.images}:\n{out}")
                return secs, rss
            return run

        once("")()  # warm-up: imports compiled, the registry's first login
        results = alternate(args.runs, [("berth", once("")), ("default", once("default"))])
        b = [r[0] for r in results["berth"]]
        d = [r[0] for r in results["default"]]
        print(machine_line())
        print(f"`pyflyte --pkgs bench_images package --fast` of a project with {args.images} tasks, each with its own "
              f"ImageSpec (bookworm-python base, distinct `env`), every image already in {registry} (put there by "
              f"`skopeo copy`, {prepared:.0f} s, not timed). Both runs use the same venv (flytekit 1.16.31 and this "
              f"checkout's package; berth is {s.berth}); the flytekit row sets `builder=\"default\"` on each spec, "
              f"whose check goes through dockerd (logged in with the same DOCKER_CONFIG). {args.runs} runs each, "
              f"alternating; each run checked to find all {args.images} images and write {args.images} task templates.")
        print(f"\n**pyflyte package, {args.images} ImageSpecs, all present**\n")
        print(md_table(["builder", "median s", "runs", "peak RSS MiB (pyflyte)", "vs berth"], [
            ("berth plugin (one `berth flytekit serve`, a registry check per image)", fmt(median(b)), len(b),
             fmt(max(r[1] for r in results["berth"]), 1), "1.00x"),
            ("flytekit default builder (`docker` SDK `get_registry_data` per image)", fmt(median(d)), len(d),
             fmt(max(r[1] for r in results["default"]), 1), f"{median(d) / median(b):.2f}x"),
        ]))
