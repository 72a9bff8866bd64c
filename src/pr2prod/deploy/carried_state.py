"""The rehearsal's state, carried from one CI run on main to the next as an artifact.

A rehearsal (DEPLOY_TARGET unset) runs the canary on the CI runner with the local target;
its processes end with the job. So that the next rehearsal has a stable side to compare
with, the deploy job saves the release left serving (its exported bento) and the history
in the `deploy-state-local` artifact, and the next run fetches the newest one from main's
runs and starts that release as stable. Artifacts expire (90 days by default): then the
rehearsal is a first deploy again, which is harmless. Production never depends on this:
the Kubernetes target keeps its record on the cluster (pr2prod.deploy.kubernetes).
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

ARTIFACT = "deploy-state-local"
WORKFLOW = "main.yml"
# Runs on the repository's own main: a push, or a manual run from main. Never a pull
# request's run, whose workflow files the pull request could have changed.
TRUSTED_EVENTS = ("push", "workflow_dispatch")
# Runs looked at before giving up: failed builds save no state, but not hundreds in a row.
MAX_RUNS = 300
# An image reference or bento tag: no spaces, quotes, `$` or parentheses.
RELEASE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,299}$")

STABLE_FILE, BENTO_FILE, HISTORY_FILE = "stable", "stable.bento", "history.jsonl"


@dataclass(frozen=True)
class CarriedState:
    run_id: int  # the run that saved it
    directory: Path  # where it was unpacked
    stable: str | None  # the release it left serving; None when none served

    @property
    def history(self) -> Path:
        return self.directory / HISTORY_FILE


def fetch_newest(
    github: GitHub, directory: Path, branch: str = "main", workflow: str = WORKFLOW
) -> CarriedState | None:
    """Download and unpack the newest unexpired state saved by `workflow` on `branch`.

    None when no run saved one (a fresh fork) or the newest has expired (then every older
    one has too).
    """
    runs = github.paginate(f"actions/workflows/{workflow}/runs", "workflow_runs", branch=branch)
    for number, run in enumerate(runs, start=1):
        if number > MAX_RUNS:
            return None
        if run.get("head_branch") != branch or run.get("event") not in TRUSTED_EVENTS:
            continue
        listing = github.paginate(f"actions/runs/{run['id']}/artifacts", "artifacts", name=ARTIFACT)
        found = [artifact for artifact in listing if artifact["name"] == ARTIFACT]
        if not found:
            continue
        if found[0].get("expired"):
            return None
        return _unpack(github, found[0]["id"], run["id"], directory)
    return None


def _unpack(github: GitHub, artifact_id: int, run_id: int, directory: Path) -> CarriedState:
    shutil.rmtree(directory, ignore_errors=True)
    archive = github.download(f"actions/artifacts/{artifact_id}/zip", directory / "state.zip")
    try:
        with zipfile.ZipFile(archive) as unzipped:
            for member in unzipped.namelist():
                if member not in (STABLE_FILE, BENTO_FILE, HISTORY_FILE):
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


def _in_store(tag: str) -> bool:
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.bentos.get(tag)
    except NotFound:
        return False
    return True


def start_previous(carried: CarriedState, built: str) -> str:
    """Start the carried stable release behind the local router; return its tag.

    Its bento comes from the state, unless it is `built` (in the store already). The
    carried history replaces the one-line history a fresh start would begin.
    """
    import bentoml

    from pr2prod.deploy.assembly import local_target

    if carried.stable is None:
        raise Pr2prodError(f"the state of run {carried.run_id} names no stable release")
    bento = carried.directory / BENTO_FILE
    if carried.stable != built and not _in_store(carried.stable):
        if not bento.is_file():
            raise Pr2prodError(f"the state of run {carried.run_id} holds no bento")
        bentoml.import_bento(str(bento.resolve()))
    target = local_target()
    try:
        target.up(carried.stable)
    except Pr2prodError:
        target.down()
        raise
    if carried.history.is_file():
        write_atomically(paths.DEPLOY_STATE / HISTORY_FILE, carried.history.read_text())
    return carried.stable


def save(directory: Path) -> str | None:
    """Write what the next rehearsal starts from: the serving stable release, its bento and
    the history. Returns that release; None (nothing written) when no stable serves."""
    import bentoml

    from pr2prod.deploy.assembly import local_target

    stable = local_target().status()["stable"]
    if not stable or not stable["alive"]:
        return None
    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    (directory / STABLE_FILE).write_text(stable["release"] + "\n")
    bentoml.export_bento(stable["release"], str((directory / BENTO_FILE).resolve()))
    history = paths.DEPLOY_STATE / HISTORY_FILE
    if history.is_file():
        shutil.copyfile(history, directory / HISTORY_FILE)
    return str(stable["release"])
