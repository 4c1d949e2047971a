"""Ctrl-C in the terminal where pyflyte builds stops berth's build too: pyflyte ends, berth ends, the engine stops
the RUN step it was running, and nothing is pushed."""

import os
import random
import signal
import subprocess
import time
from pathlib import Path

from conftest import project_copy, venv_bin
from registry import Registry

SLOW = """
import os

from flytekit import ImageSpec, task, workflow

slow_image = ImageSpec(
    name="fk-slow",
    registry=os.environ["BERTH_FLYTEKIT_REGISTRY"],
    base_image=os.environ["BERTH_TEST_PYTHON_IMAGE"],
    python_exec="/usr/bin/python3",
    builder_config={"uv_image": os.environ["BERTH_TEST_UV_IMAGE"]},
    builder_options={"install_flytekit": False},
    commands=["sleep %d"],
)


@task(container_image=slow_image)
def wait() -> int:
    return 1


@workflow
def slow() -> int:
    return wait()
"""


def sleeping(seconds: int) -> list:
    """Processes on this machine running `sleep SECONDS` (the build's RUN step, wherever the engine runs it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"sleep" in args[0].split(b"/")[-1] and str(seconds).encode() in args:
            found.append(int(entry.name))
    return found


def group_members(pgid: int) -> list:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.getpgid(int(entry.name)) == pgid:
                    members.append(int(entry.name))
            except OSError:
                pass
    return members


def test_ctrl_c_stops_the_build(env):
    seconds = random.randint(3000, 3999)
    project = project_copy()
    (project / "workflows" / "slow.py").write_text(SLOW % seconds)
    registry_path = f"{env.registry}/berth-flytekit-{env.run_id}-interrupt"
    environ = {
        "HOME": os.environ.get("HOME", "/root"),
        "PATH": f"{venv_bin()}:/usr/bin:/bin",
        "BERTH_ENGINE": "docker",
        "BERTH_FLYTEKIT_REGISTRY": registry_path,
        "BERTH_TEST_PYTHON_IMAGE": env.python_image,
        "BERTH_TEST_UV_IMAGE": env.uv_image,
        "BERTH_REGISTRY_USERNAME": env.user,
        "BERTH_REGISTRY_PASSWORD": env.password,
    }
    log = project / "pyflyte.log"
    with open(log, "wb") as out:
        # Its own process group, as a terminal gives the command it runs; Ctrl-C signals that whole group.
        proc = subprocess.Popen([str(venv_bin() / "pyflyte"), "build", "workflows/slow.py", "slow"], cwd=project,
                                env=environ, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 600
        while not sleeping(seconds):
            assert proc.poll() is None, f"pyflyte ended before the build ran its RUN step:\n{log.read_text()}"
            assert time.monotonic() < deadline, f"the build never reached its RUN step:\n{log.read_text()}"
            time.sleep(0.5)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    output = log.read_text()
    print(output)
    assert code != 0, output
    assert "interrupted" in output, output
    assert group_members(proc.pid) == [], "berth or another child of pyflyte is still running"
    deadline = time.monotonic() + 60
    while sleeping(seconds) and time.monotonic() < deadline:
        time.sleep(1)
    assert sleeping(seconds) == [], "the engine still runs the build's RUN step"
    assert Registry(env.registry, env.user, env.password).tags(f"{registry_path.split('/', 1)[1]}/fk-slow") == []
