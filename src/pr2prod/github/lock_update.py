"""Re-locked dependencies proposed as a pull request, so they go through the normal checks.

Dependabot's pip updater never touches requirements.lock (it reads only `*.txt`/`*.in`
files), so a scheduled workflow re-locks on main (`make lock UPGRADE=1`) and calls
`pr2prod propose-lock`. When a lock file changed, the new files become one commit on top
of main, on a branch of their own that each run rewrites, and one pull request from it
stays open until someone merges or closes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from pr2prod.github.api import GitHub
from pr2prod.github.proposal import committed_text, propose_files

BRANCH = "pr2prod/relock"
TITLE = "Re-lock the Python dependencies"
PIN = re.compile(r"^([A-Za-z0-9_.-]+)==(\S+)", re.M)


@dataclass(frozen=True)
class Proposal:
    changed: list[Path]  # the lock files that differ from the base commit
    url: str | None  # the pull request carrying them (None: nothing changed)
    opened: bool  # False: an open pull request was updated instead


def propose_lock_update(
    github: GitHub, files: list[Path], base: str = "main", branch: str = BRANCH
) -> Proposal:
    """Open (or update) the pull request that moves `files` to their contents in the
    working tree; HEAD must be the tip of `base`, as a checkout of it leaves it."""
    changed = [file for file in files if committed_text(file) != file.read_text()]
    if not changed:
        return Proposal([], None, opened=False)
    url, opened = propose_files(
        github, changed, base=base, branch=branch, title=TITLE, body=describe_changes(changed)
    )
    return Proposal(changed, url, opened)


def describe_changes(changed: list[Path]) -> str:
    """The pull request's text: each lock file's version changes, one line per package."""
    sections = []
    for file in changed:
        before = dict(PIN.findall(committed_text(file)))
        after = dict(PIN.findall(file.read_text()))
        lines = [
            f"- {name}: {before.get(name, '(new)')} -> {after.get(name, '(removed)')}"
            for name in sorted(before.keys() | after.keys())
            if before.get(name) != after.get(name)
        ]
        sections.append(
            f"`{file.as_posix()}`:\n" + ("\n".join(lines) or "- hashes or comments only")
        )
    return (
        "`make lock UPGRADE=1` moved these pins (releases at least a week old). The pull "
        "request's checks reproduce the pipeline with them: merge it when they pass.\n\n"
        + "\n\n".join(sections)
    )
