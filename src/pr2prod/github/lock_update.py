"""Re-locked dependencies proposed as a pull request, so they go through the normal checks.

Dependabot's pip updater never touches requirements.lock (it reads only `*.txt`/`*.in`
files), so a scheduled workflow re-locks on main (`make lock UPGRADE=1`) and calls
`pr2prod propose-lock`. When a lock file changed, the new files become one commit on top
of main, on a branch of their own that each run rewrites, and one pull request from it
stays open until someone merges or closes it.

The commit is made through GitHub's git data API rather than `git push`: the job keeps
no credentials in git's configuration, and GitHub signs the commit it makes.
"""

from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub

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
    changed = [file for file in files if _committed(file) != file.read_text()]
    if not changed:
        return Proposal([], None, opened=False)
    body = describe_changes(changed)
    tree = github.post(
        "git/trees",
        {
            "base_tree": _git("rev-parse", "HEAD^{tree}").strip(),
            "tree": [
                {
                    "path": file.as_posix(),
                    "mode": "100644",
                    "type": "blob",
                    "content": file.read_text(),
                }
                for file in changed
            ],
        },
    )
    commit = github.post(
        "git/commits",
        {
            "message": f"{TITLE}\n\n{body}",
            "tree": tree["sha"],
            "parents": [_git("rev-parse", "HEAD").strip()],
        },
    )
    _point_branch(github, branch, commit["sha"])
    owner = github.repository.split("/")[0]
    for pull in github.paginate("pulls", head=f"{owner}:{branch}", base=base, state="open"):
        github.patch(f"pulls/{pull['number']}", {"body": body})
        return Proposal(changed, pull["html_url"], opened=False)
    pull = github.post("pulls", {"title": TITLE, "head": branch, "base": base, "body": body})
    return Proposal(changed, pull["html_url"], opened=True)


def describe_changes(changed: list[Path]) -> str:
    """The pull request's text: each lock file's version changes, one line per package."""
    sections = []
    for file in changed:
        before = dict(PIN.findall(_committed(file)))
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


def _point_branch(github: GitHub, branch: str, sha: str) -> None:
    """Create `branch` at `sha`, or move it there: it only ever holds the latest re-lock."""
    ref = f"heads/{branch}"
    # matching-refs answers a list (empty when there is no such branch) rather than a 404.
    if any(found["ref"] == f"refs/{ref}" for found in github.get(f"git/matching-refs/{ref}")):
        github.patch(f"git/refs/{ref}", {"sha": sha, "force": True})
    else:
        github.post("git/refs", {"ref": f"refs/{ref}", "sha": sha})


def _committed(file: Path) -> str:
    """`file` as HEAD has it ("" when HEAD has no such file)."""
    return _git("show", f"HEAD:{file.as_posix()}", missing_ok=True)


def _git(*arguments: str, missing_ok: bool = False) -> str:
    result = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        if missing_ok:
            return ""
        raise Pr2prodError(
            f"`git {' '.join(arguments)}` failed: {result.stderr.strip()}",
            hint="run this in a checkout of the base branch, with the re-locked files in it",
        )
    return result.stdout
