"""Running a documented command as a reader would, inside the test environment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path


def run_documented(
    command: str, cwd: Path, replace: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run `command` with bash in `cwd`, after replacing addresses a test must change.

    The suite already runs inside the locked environment, so nothing is rebuilt: `VENV`
    set to nothing makes `make` use it instead of `.venv`, and `.venv/bin/x` is the `x`
    on PATH.
    """
    for documented, here in (replace or {}).items():
        command = command.replace(documented, here)
    command = command.removeprefix(".venv/bin/")
    return subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, "VENV": ""},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def failure_message(command: object, result: subprocess.CompletedProcess[str]) -> str:
    return (
        f"{command}\nexited {result.returncode}\n"
        f"--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-3000:]}"
    )
