"""Finding and running the ``berth`` binary that came in the same wheel."""

import atexit
import json
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from typing import Optional

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


class _Server:
    """One ``berth flytekit serve`` for this process: every request after the first reuses its registry
    connections and tokens instead of starting berth and logging in again for each image. Its progress goes
    straight to this process's standard error (the terminal pyflyte runs in). Ctrl-C stops berth too: berth is in
    the terminal's foreground process group and gets the same SIGINT; if only this process was signalled, it is
    passed on. A berth that ended (interrupted, or killed) is started again on the next request."""

    def __init__(self):
        self.proc = None
        self.cwd = None
        # One request at a time: flytekit builds one image after another, but a threaded caller must not
        # interleave lines.
        self.lock = threading.Lock()

    def ask(self, action: str, payload: dict, force: bool = False) -> Answer:
        with self.lock:
            return self._ask(action, payload, force)

    def _ask(self, action: str, payload: dict, force: bool) -> Answer:
        # berth resolves relative paths against its working directory, as flytekit does against this process's.
        if self.proc is not None and (self.proc.poll() is not None or self.cwd != os.getcwd()):
            self.close()
        if self.proc is None:
            self.cwd = os.getcwd()
            self.proc = subprocess.Popen(
                [find_berth(), "flytekit", "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=None
            )
        request = f"{action}{' --force' if force else ''} {json.dumps(payload)}\n"
        try:
            self.proc.stdin.write(request.encode("utf-8"))
            self.proc.stdin.flush()
            line = self.proc.stdout.readline()
        except BrokenPipeError:
            line = b""
        except BaseException:
            self.stop()
            raise
        if not line:
            code = self.proc.wait()
            self.proc = None
            return Answer(_no_answer(f"berth ended (exit status {code}) without answering"), code)
        try:
            data = json.loads(line)
        except ValueError:
            data = _no_answer(f"berth answered something else than JSON: {line[:500]!r}")
        return Answer(data, 0)

    def close(self) -> None:
        if self.proc is not None:
            try:
                self.proc.stdin.close()
                self.proc.wait(timeout=30)
            except (OSError, subprocess.TimeoutExpired):
                self.stop()
            self.proc = None

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _no_answer(message: str) -> dict:
    return {
        "error": {
            "kind": "error",
            "message": message,
            "hint": "run the same pyflyte command again; if it persists, reinstall the berth package",
        }
    }


_SERVER = _Server()
atexit.register(_SERVER.close)


def run_berth(action: str, payload: dict, force: bool = False) -> Answer:
    """Asks berth about one spec: ``action`` is name, exists or build."""
    return _SERVER.ask(action, payload, force)
