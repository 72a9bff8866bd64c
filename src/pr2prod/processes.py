"""A server process started by us: wait until it serves, and stop it by its PID.

For the serving benchmark and the tests, which start servers of their own and must never
stop anything else.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import httpx

from pr2prod.errors import Pr2prodError

STOP_TIMEOUT_S = 15.0


def wait_until_serving(
    process: subprocess.Popen, url: str, log: Path, timeout: float, path: str = "/readyz"
) -> None:
    """Return once GET `url``path` answers 200; fail when the process exits or time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise Pr2prodError(
                f"{process.args[0]} exited with {process.returncode} (log: {log})",
                hint=log_tail(log),
            )
        try:
            if httpx.get(f"{url}{path}", timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass  # still starting
        time.sleep(0.3)
    raise Pr2prodError(f"{url} was not ready within {timeout:g} s (log: {log})", hint=log_tail(log))


def stop_process(process: subprocess.Popen, timeout: float = STOP_TIMEOUT_S) -> None:
    """By its PID: politely (SIGTERM), then for sure (SIGKILL)."""
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=timeout)


def log_tail(log: str | Path, lines: int = 30) -> str:
    """The last `lines` lines of a server's log ("" when there is none yet)."""
    path = Path(log)
    if not path.is_file():
        return ""
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
