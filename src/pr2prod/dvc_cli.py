"""Running DVC's command line from the package (the same DVC the environment pins)."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

from pr2prod.errors import Pr2prodError


def run_dvc(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run `dvc ARGS` in the working directory and capture its output."""
    result = subprocess.run(
        [sys.executable, "-m", "dvc", *args], capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise Pr2prodError(f"`dvc {' '.join(args)}` failed (exit {result.returncode}):\n{output}")
    return result


def dvc_json(*args: str) -> Any:
    return json.loads(run_dvc(*args, "--json").stdout or "null")


def default_remote() -> str | None:
    """The name of the default DVC remote, or None when none is configured."""
    result = run_dvc("remote", "default", check=False)
    name = result.stdout.strip()
    return name if result.returncode == 0 and name else None
