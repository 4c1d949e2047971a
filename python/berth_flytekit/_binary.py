"""Finding and running the ``berth`` binary that came in the same wheel."""

import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
from typing import List, Optional

#: Overrides where the binary is (for a development build).
BERTH_BIN = "BERTH_BIN"


def find_berth() -> str:
    """The ``berth`` binary: $BERTH_BIN, else the one installed next to this package's interpreter, else PATH."""
    override = os.environ.get(BERTH_BIN)
    if override:
        return override
    # The wheel puts the binary in the scripts folder of the environment it was installed into, as ruff's and
    # uv's wheels do; look there first so a different berth earlier on PATH is not picked by accident.
    candidates = [sysconfig.get_path("scripts")]
    user_scheme = {"posix": "posix_user", "nt": "nt_user"}.get(os.name)
    if user_scheme:
        candidates.append(sysconfig.get_path("scripts", scheme=user_scheme))
    for folder in candidates:
        path = os.path.join(folder, "berth" + (".exe" if sys.platform == "win32" else ""))
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    found = shutil.which("berth")
    if found:
        return found
    raise FileNotFoundError(
        "the berth binary is not installed next to this Python; reinstall the package: pip install berth"
    )


class Answer:
    """One answer of ``berth flytekit``: the JSON object it printed and its exit status."""

    def __init__(self, data: dict, returncode: int):
        self.data = data
        self.returncode = returncode

    @property
    def error(self) -> Optional[dict]:
        return self.data.get("error")


def run_berth(args: List[str], payload: dict) -> Answer:
    """Runs ``berth flytekit ARGS`` with ``payload`` on standard input; its progress goes straight to this
    process's standard error (the terminal pyflyte runs in). Ctrl-C stops berth too: berth is in the terminal's
    foreground process group and gets the same SIGINT; if only this process was signalled, it is passed on."""
    command = [find_berth(), "flytekit", *args]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None)
    try:
        out, _ = proc.communicate(json.dumps(payload).encode("utf-8"))
    except KeyboardInterrupt:
        _stop(proc)
        raise
    except BaseException:
        _stop(proc)
        raise
    text = out.decode("utf-8", errors="replace").strip()
    try:
        data = json.loads(text.splitlines()[-1]) if text else {}
    except ValueError:
        data = {}
    if not isinstance(data, dict) or not data:
        data = {
            "error": {
                "kind": "error",
                "message": f"berth exited with status {proc.returncode} and no answer: {text[:500]!r}",
                "hint": "run the same pyflyte command again; if it persists, reinstall the berth package",
            }
        }
    return Answer(data, proc.returncode)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
