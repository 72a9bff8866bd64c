"""Reading the project as it was at a git revision, and choosing the base to compare with."""

from __future__ import annotations

import subprocess
from pathlib import Path

from pr2prod import environment
from pr2prod.errors import Pr2prodError


def git(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], capture_output=True, text=True, check=False)


def read_at(revision: str | None, path: Path) -> str | None:
    """The text of `path` at `revision` (None: the working tree); None if it does not exist."""
    if revision is None:
        return path.read_text() if path.is_file() else None
    result = git("show", f"{revision}:{path.as_posix()}")
    return result.stdout if result.returncode == 0 else None


def read_output_at(revision: str | None, path: Path) -> str | None:
    """Like read_at, for a pipeline output that may be kept by DVC instead of git (per-row
    files of private data): from the DVC cache, or its remote, as that revision's dvc.lock
    records it. None when neither has it (e.g. no remote is reachable)."""
    text = read_at(revision, path)
    if text is not None or revision is None:
        return text
    import dvc.api  # slow to import, and only needed here

    try:
        return dvc.api.read(path.as_posix(), rev=revision)
    except Exception:  # no lock entry, a missing object, no remote...: all mean "absent"
        return None


def commit_sha(revision: str) -> str:
    result = git("rev-parse", "--verify", "--quiet", f"{revision}^{{commit}}")
    if result.returncode != 0:
        raise Pr2prodError(
            f"the base revision '{revision}' is not in this git repository",
            hint="fetch it first (e.g. `git fetch origin main:main`) or pass BASE=<rev>",
        )
    return result.stdout.strip()


def head_sha() -> str | None:
    result = git("rev-parse", "HEAD")
    return result.stdout.strip() if result.returncode == 0 else None


def default_base() -> str | None:
    """The revision a report compares with when none is given.

    In a pull-request run: the PR's base branch. On a feature branch: main. On main
    itself: the previous commit. None when there is nothing to compare with.
    """
    candidates = []
    base_ref = environment.GITHUB_BASE_REF.value()
    if base_ref:
        candidates += [f"origin/{base_ref}", base_ref]
    branch = git("branch", "--show-current").stdout.strip()
    if branch and branch != "main":
        candidates += ["main", "origin/main"]
    candidates.append("HEAD~1")
    for candidate in candidates:
        if git("rev-parse", "--verify", "--quiet", f"{candidate}^{{commit}}").returncode == 0:
            return candidate
    return None
