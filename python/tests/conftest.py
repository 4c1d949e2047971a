"""Shared set-up for the flytekit plugin's tests: the engines and registry of scripts/env (a missing one fails the
test, never skips it), a run id that makes every pushed repository new, and pyflyte run the way a user runs it."""

import os
import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
PROJECT = HERE / "project"

#: The engines a pyflyte run is tested on: (test id, BERTH_ENGINE, run as the rootless user).
ENGINES = [
    ("docker", "docker", False),
    ("podman", "podman", False),
    ("podman-rootless", "podman", True),
    ("containerd", "containerd", False),
]


def required(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.fail(f"{name} is not set: source /var/lib/berth-env/env.sh (scripts/env/up.sh starts the engines)")
    return value


class TestEnv:
    """What scripts/env provides, read from BERTH_TEST_* variables."""

    def __init__(self):
        self.registry = required("BERTH_TEST_REGISTRY")
        self.user = required("BERTH_TEST_REGISTRY_USER")
        self.password = Path(required("BERTH_TEST_REGISTRY_PASSWORD_FILE")).read_text().strip()
        self.python_image = required("BERTH_TEST_PYTHON_IMAGE")
        self.uv_image = required("BERTH_TEST_UV_IMAGE")
        self.rootless_user = required("BERTH_TEST_PODMAN_ROOTLESS_USER")
        self.run_id = f"{time.strftime('%H%M%S')}-{uuid.uuid4().hex[:6]}"


@pytest.fixture(scope="session")
def env() -> TestEnv:
    return TestEnv()


def venv_bin() -> Path:
    """The folder of this interpreter's scripts (pyflyte, berth): the venv scripts/python-test.sh made."""
    import sysconfig

    return Path(sysconfig.get_path("scripts"))


def project_copy(owner: str = None) -> Path:
    """A fresh copy of the test project, owned by `owner` if given (the rootless user must read and write it)."""
    top = Path(tempfile.mkdtemp(prefix="berth-flytekit-"))
    top.chmod(0o755)
    dest = top / "project"
    shutil.copytree(PROJECT, dest, ignore=shutil.ignore_patterns("__pycache__"))
    if owner:
        subprocess.run(["chown", "-R", f"{owner}:{owner}", str(top)], check=True)
    return dest


def run_pyflyte(args, cwd: Path, extra_env: dict, as_user: str = None, timeout: int = 900):
    """pyflyte ARGS in `cwd` with a clean environment (PATH with the venv first, HOME, and `extra_env`), as root
    or, for `as_user`, as that user with the environment a login gives (XDG_RUNTIME_DIR for rootless Podman)."""
    path = f"{venv_bin()}:/usr/local/bin:/usr/bin:/bin"
    if as_user:
        import pwd

        pw = pwd.getpwnam(as_user)
        base = {"HOME": pw.pw_dir, "USER": as_user, "PATH": path, "XDG_RUNTIME_DIR": f"/run/user/{pw.pw_uid}"}
        assignments = [f"{k}={v}" for k, v in {**base, **extra_env}.items()]
        command = [
            "setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups",
            "env", "-i", *assignments, str(venv_bin() / "pyflyte"), *args,
        ]
        environ = None
    else:
        command = [str(venv_bin() / "pyflyte"), *args]
        environ = {"HOME": os.environ.get("HOME", "/root"), "PATH": path, **extra_env}
    # Rich wraps tracebacks at the terminal width; a wide one keeps messages on one line for the assertions.
    if environ is not None:
        environ["COLUMNS"] = "250"
    else:
        command.insert(command.index("env") + 2, "COLUMNS=250")
    proc = subprocess.run(
        command, cwd=cwd, env=environ, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout
    )
    output = proc.stdout.decode("utf-8", errors="replace")
    print(f"$ pyflyte {' '.join(args)}  (in {cwd}{', as ' + as_user if as_user else ''})\n{output}")
    return proc.returncode, output
