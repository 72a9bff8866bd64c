"""Files in the working tree proposed as one pull request: a commit on a branch of its own.

The commit is made through GitHub's git data API rather than `git push`: the job keeps no
credentials in git's configuration, and GitHub signs the commit it makes. The branch only
ever holds the latest proposal (each run moves it), and one pull request from it stays
open until someone merges or closes it.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub


def propose_files(
    github: GitHub, files: list[Path], *, base: str, branch: str, title: str, body: str
) -> tuple[str, bool]:
    """Commit `files` as they are now on top of HEAD (the tip of `base`) on `branch`, and
    open or update its pull request; returns the pull request's address and whether it is new.
    """
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
                for file in files
            ],
        },
    )
    commit = github.post(
        "git/commits",
        {
            "message": f"{title}\n\n{body}",
            "tree": tree["sha"],
            "parents": [_git("rev-parse", "HEAD").strip()],
        },
    )
    _point_branch(github, branch, commit["sha"])
    owner = github.repository.split("/")[0]
    for pull in github.paginate("pulls", head=f"{owner}:{branch}", base=base, state="open"):
        github.patch(f"pulls/{pull['number']}", {"body": body})
        return pull["html_url"], False
    pull = github.post("pulls", {"title": title, "head": branch, "base": base, "body": body})
    return pull["html_url"], True


def _point_branch(github: GitHub, branch: str, sha: str) -> None:
    """Create `branch` at `sha`, or move it there."""
    ref = f"heads/{branch}"
    # matching-refs answers a list (empty when there is no such branch) rather than a 404.
    if any(found["ref"] == f"refs/{ref}" for found in github.get(f"git/matching-refs/{ref}")):
        github.patch(f"git/refs/{ref}", {"sha": sha, "force": True})
    else:
        github.post("git/refs", {"ref": f"refs/{ref}", "sha": sha})


def committed_text(file: Path) -> str:
    """`file` as HEAD has it ("" when HEAD has no such file)."""
    return _git("show", f"HEAD:{file.as_posix()}", missing_ok=True)


def _git(*arguments: str, missing_ok: bool = False) -> str:
    result = subprocess.run(["git", *arguments], capture_output=True, text=True, check=False)
    if result.returncode != 0:
        if missing_ok:
            return ""
        raise Pr2prodError(
            f"`git {' '.join(arguments)}` failed: {result.stderr.strip()}",
            hint="run this in a checkout of the base branch, with the changed files in it",
        )
    return result.stdout
