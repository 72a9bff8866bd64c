"""The rehearsal's state, carried from one CI run on main to the next as an artifact.

A rehearsal (DEPLOY_TARGET unset) runs the canary on the CI runner with the local target;
its processes end with the job. The deploy job saves the name of the release left serving
and the history in the `deploy-state-local` artifact; the next run fetches the newest one
saved by main.yml on a commit of main and carries the history on.

An artifact is data, never code: anyone who can push a branch can make some workflow run
upload one. So the state holds no bento, and the previous release is never imported from
it. A rehearsal's stable side is built on the runner: the release just built when the
carried one is the same, else the stand-in `make rehearse` uses (the pipeline's model
retrained with the next seed). Artifacts expire (90 days by default): then the rehearsal
is a first deploy again, which is harmless. Production never depends on this: the
Kubernetes target keeps its record on the cluster (pr2prod.deploy.kubernetes).
"""

from __future__ import annotations

import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path

from pr2prod import paths
from pr2prod.deploy.records import write_atomically
from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub
from pr2prod.settings import load_settings

ARTIFACT = "deploy-state-local"
WORKFLOW = "main.yml"
# Runs on the repository's own main: a push, or a manual run from main. Never a pull
# request's run, whose workflow files the pull request could have changed.
TRUSTED_EVENTS = ("push", "workflow_dispatch")
# Runs looked at before giving up: failed builds save no state, but not hundreds in a row.
MAX_RUNS = 300
# An image reference or bento tag: no spaces, quotes, `$` or parentheses.
RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,299}$")

STABLE_FILE, HISTORY_FILE = "stable", "history.jsonl"
# Where the stand-in previous release is built (pr2prod.deploy.releases.retrained_release).
STAND_IN_DIR = Path("build") / "rehearsal" / "previous"


@dataclass(frozen=True)
class CarriedState:
    run_id: int  # the run that saved it
    directory: Path  # where it was unpacked
    stable: str | None  # the release it left serving; None when none served

    @property
    def history(self) -> Path:
        return self.directory / HISTORY_FILE


def fetch_newest(
    github: GitHub,
    directory: Path,
    current_sha: str,
    branch: str = "main",
    workflow: str = WORKFLOW,
) -> CarriedState | None:
    """Download and unpack the newest unexpired state saved by `workflow` on `branch`.

    Only a run of the repository's own workflow file, started by a push or by hand, on a
    commit `current_sha` descends from: a pushed tag named like the branch passes the
    first checks (GitHub reports the tag as the run's head_branch), never the last.
    None when no run saved one (a fresh fork) or the newest has expired (then every older
    one has too).
    """
    runs = github.paginate(f"actions/workflows/{workflow}/runs", "workflow_runs", branch=branch)
    for number, run in enumerate(runs, start=1):
        if number > MAX_RUNS:
            return None
        if not _from_the_branch_workflow(run, branch, workflow):
            continue
        listing = github.paginate(f"actions/runs/{run['id']}/artifacts", "artifacts", name=ARTIFACT)
        found = [artifact for artifact in listing if artifact["name"] == ARTIFACT]
        if not found:
            continue
        if not _is_ancestor(github, run["head_sha"], current_sha):
            print(f"::warning::run {run['id']} saved {ARTIFACT} on {run['head_sha']}, which is "
                  f"not a commit of {branch}: its state is ignored")  # fmt: skip
            continue
        if found[0].get("expired"):
            return None
        return _unpack(github, found[0]["id"], run["id"], directory)
    return None


def _from_the_branch_workflow(run: dict, branch: str, workflow: str) -> bool:
    return (
        run.get("head_branch") == branch
        and run.get("event") in TRUSTED_EVENTS
        and run.get("path") == f".github/workflows/{workflow}"
    )


def _is_ancestor(github: GitHub, commit: str, descendant: str) -> bool:
    """Is `commit` in `descendant`'s history? (GitHub's comparison of the two)"""
    if not re.fullmatch(r"[0-9a-f]{40}", commit or ""):
        return False
    try:
        comparison = github.get(f"compare/{commit}...{descendant}")
    except Pr2prodError:  # GitHub knows no such commit in this repository
        return False
    return comparison.get("status") in ("ahead", "identical")


def _unpack(github: GitHub, artifact_id: int, run_id: int, directory: Path) -> CarriedState:
    shutil.rmtree(directory, ignore_errors=True)
    archive = github.download(f"actions/artifacts/{artifact_id}/zip", directory / "state.zip")
    try:
        with zipfile.ZipFile(archive) as unzipped:
            for member in unzipped.namelist():
                if member not in (STABLE_FILE, HISTORY_FILE):
                    raise Pr2prodError(f"{ARTIFACT} of run {run_id} holds an unexpected {member!r}")
            unzipped.extractall(directory)
    except zipfile.BadZipFile as error:
        raise Pr2prodError(f"{ARTIFACT} of run {run_id} is not a zip archive") from error
    archive.unlink()
    stable_file = directory / STABLE_FILE
    stable = stable_file.read_text().strip() if stable_file.is_file() else None
    if stable is not None and not RELEASE.match(stable):
        raise Pr2prodError(f"{ARTIFACT} of run {run_id} names no valid stable release")
    return CarriedState(run_id, directory, stable or None)


def start_previous(carried: CarriedState, built: str) -> str:
    """Start this rehearsal's stable side behind the local router; return its tag.

    The carried release when it is `built` (this runner built it); otherwise, since no
    release is taken from an artifact, the stand-in `make rehearse` uses. The carried
    history replaces the one-line history a fresh start would begin.
    """
    from pr2prod.deploy.assembly import local_target
    from pr2prod.deploy.releases import retrained_release

    if carried.stable is None:
        raise Pr2prodError(f"the state of run {carried.run_id} names no stable release")
    stable = built
    if carried.stable != built:
        seed = load_settings().seed + 1
        print(f"rehearsal-start: {carried.stable} was built on another runner; standing in "
              f"for it: the model retrained with seed {seed}")  # fmt: skip
        stable = retrained_release(STAND_IN_DIR, seed=seed)
    target = local_target()
    try:
        target.up(stable)
    except Pr2prodError:
        target.down()
        raise
    if carried.history.is_file():
        write_atomically(paths.DEPLOY_STATE / HISTORY_FILE, carried.history.read_text())
    return stable


def save(directory: Path) -> str | None:
    """Write what the next rehearsal starts from: the serving stable release's name and the
    history. Returns that release; None (nothing written) when no stable serves."""
    from pr2prod.deploy.assembly import local_target

    stable = local_target().status()["stable"]
    if not stable or not stable["alive"]:
        return None
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / STABLE_FILE).write_text(stable["release"] + "\n")
    history = paths.DEPLOY_STATE / HISTORY_FILE
    if history.is_file():
        shutil.copyfile(history, directory / HISTORY_FILE)
    return str(stable["release"])
