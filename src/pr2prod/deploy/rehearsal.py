"""`make run`'s last act: the workspace's bento rolled out as a canary, rehearsed locally.

The rehearsal keeps to its own corner (build/rehearsal/): its own router and versions on
free ports and its own history, so a deployment started with `make up` is never touched.
Stable is the pipeline's model retrained with the next seed, standing in for the previous
release (a fresh clone has no other). The canary is the workspace's bento, rolled out with
params.yaml's canary settings under steady generated traffic (the test rows), and
everything is stopped at the end, whatever happened.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pr2prod.deploy.assembly import standalone_controller, synthetic_records
from pr2prod.deploy.history import Decision
from pr2prod.deploy.load import LoadCounts, SteadyLoad
from pr2prod.deploy.local import LocalTarget
from pr2prod.deploy.releases import retrained_release
from pr2prod.settings import Settings

REHEARSAL_DIR = Path("build") / "rehearsal"
CLIENT_RATE = 50.0  # requests per second of generated client traffic


@dataclass(frozen=True)
class Rehearsal:
    stable: str  # the stand-in previous release
    decision: Decision
    clients: LoadCounts
    seconds: float  # from the canary's start to the decision
    monitoring: str = ""  # what `check` found on the deployed version, in one line


def rehearse(
    release: str,
    settings: Settings,
    git_sha: str | None = None,
    model_version: str | None = None,
    rate: float = CLIENT_RATE,
    folder: Path = REHEARSAL_DIR,
    say: Callable[[str], None] = print,
    check: Callable[[str], str] | None = None,
) -> Rehearsal:
    """Roll `release` out locally next to a stand-in stable, under generated traffic.

    `check`, given the base URL of the version deployed at the end, runs before everything
    stops and says in one line what it found (make run's monitoring check).
    """
    deploy_dir = folder / "deploy"
    target = LocalTarget(deploy_dir / "local", settings=settings.canary)
    target.down()  # what an interrupted rehearsal left running, stopped by recorded PID
    shutil.rmtree(deploy_dir, ignore_errors=True)
    seed = settings.seed + 1
    say(f"rehearsal: building the stand-in previous release (the model retrained, seed {seed})")
    stable = retrained_release(folder / "previous", seed=seed)
    controller = standalone_controller(target, settings.canary, deploy_dir, say=say)
    try:
        say(f"rehearsal: starting {stable} as stable behind a local router")
        target.up(stable)
        say(f"rehearsal: sending {rate:g} requests/s of test rows through the router")
        started = time.monotonic()
        with SteadyLoad(target.entry_url(), synthetic_records(), rate) as clients:
            decision = controller.deploy(release, git_sha=git_sha, model_version=model_version)
        seconds = time.monotonic() - started
        deployed = target.running().get("stable")
        found = check(deployed.url) if check and deployed else ""
        return Rehearsal(stable, decision, clients.counts, seconds, found)
    finally:
        target.down()
        say("rehearsal: stopped the router and every version")
