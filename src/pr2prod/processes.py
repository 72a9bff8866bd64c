"""A server process started by us: stop it by its PID, and read the end of its log.

For the local target, the benchmarks and the tests, which start servers of their own and
must never stop anything else (waiting for one to serve: pr2prod.readiness).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

STOP_TIMEOUT_S = 15.0


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
