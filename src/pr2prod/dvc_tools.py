"""DVC from the package: its command line (the same DVC the environment pins) and its hashes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from dvc.repo import Repo

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


def matches_dvc_file(dvc_file: Path) -> bool:
    """True when the workspace holds exactly the content that `dvc_file` records.

    `dvc status` cannot say this when the DVC cache is empty (a fresh clone): it reports
    "not in cache" whatever the files hold. Hashing the workspace always can.
    """
    with Repo() as repo:
        (stage,) = repo.stage.collect(str(dvc_file))
        return all(out.exists and not out.changed_checksum() for out in stage.outs)


def default_remote() -> str | None:
    """The name of the default DVC remote, or None when none is configured."""
    result = run_dvc("remote", "default", check=False)
    name = result.stdout.strip()
    return name if result.returncode == 0 and name else None
