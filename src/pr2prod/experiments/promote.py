"""`pr2prod promote NAME`: make one experiment of the sweep the branch's own result.

`dvc exp apply` puts the run's params.yaml, dvc.lock and results into the workspace (and
its artifacts from the DVC cache); they are then committed, so the normal report and gate
see a commit that holds its own pipeline's results. With a DVC remote and a git remote
the experiment is also pushed (`dvc exp push`) so others can fetch it; without them
nothing is pushed and nothing fails.
"""

from __future__ import annotations

from collections.abc import Callable

from pr2prod import paths
from pr2prod.dvc_tools import default_remote, run_dvc
from pr2prod.errors import Pr2prodError
from pr2prod.report.revisions import git

# What an experiment changes on the branch: its params, lock and git-tracked results.
PROMOTED_PATHS = (paths.PARAMS, paths.DVC_LOCK, paths.RESULTS)
GIT_REMOTE = "origin"


def promote(name: str, say: Callable[[str], None]) -> str:
    """Apply and commit experiment `name`; returns the new commit's sha."""
    listed = run_dvc("exp", "list", "--name-only", check=False).stdout.split()
    if name not in listed:
        known = ", ".join(listed) or "none"
        raise Pr2prodError(
            f"no experiment named '{name}' on this commit (experiments here: {known})",
            hint="run `make sweep`, then pick a run from `make sweep-report`'s table",
        )
    changed = git("status", "--porcelain", "--", *map(str, PROMOTED_PATHS)).stdout.strip()
    if changed:
        raise Pr2prodError(
            f"uncommitted changes to the files a promotion replaces:\n{changed}",
            hint="commit or discard them first, then promote again",
        )
    run_dvc("exp", "apply", name)
    say(f"applied {name}: params.yaml, dvc.lock and results/ are the run's")
    committed = git(
        "commit",
        "--quiet",
        "-m",
        f"Promote the sweep's experiment {name}: its params, dvc.lock and results",
        "--",
        *map(str, PROMOTED_PATHS),
    )
    if committed.returncode != 0:
        raise Pr2prodError(
            f"`git commit` of the promoted run failed: {committed.stderr.strip()}",
            hint="commit params.yaml, dvc.lock and results/ yourself",
        )
    sha = git("rev-parse", "HEAD").stdout.strip()
    say(f"committed {sha[:8]}; `make report` now reports this run")
    _push(name, say)
    return sha


def _push(name: str, say: Callable[[str], None]) -> None:
    remote = default_remote()
    has_git_remote = git("remote", "get-url", GIT_REMOTE).returncode == 0
    if remote is None:
        say("not pushing the experiment: no DVC remote is configured")
        return
    if not has_git_remote:
        say(f"not pushing the experiment: no git remote named {GIT_REMOTE}")
        return
    result = run_dvc("exp", "push", GIT_REMOTE, name, check=False)
    if result.returncode != 0:
        say(f"pushing the experiment failed (the promotion stands): {result.stderr.strip()}")
        return
    say(f"pushed {name} to {GIT_REMOTE} and its outputs to the DVC remote '{remote}'")
