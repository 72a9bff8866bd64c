"""Canary rollouts with real processes on the local target: good, bad and identical canaries.

Each rollout runs `pr2prod deploy canary` while this test sends steady client traffic
through the router, so "clients see no errors" is measured, not assumed.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from pathlib import Path

import joblib
import pytest
import yaml
from conftest import FIXTURES, free_port, run

from pr2prod.deploy.load import LoadCounts, SteadyLoad
from pr2prod.deploy.local import LocalTarget

pytestmark = pytest.mark.integration

FAULTY_MODELS = FIXTURES / "canary"
sys.path.insert(0, str(FAULTY_MODELS))  # joblib pickles the wrappers by module name
import faulty_models  # noqa: E402

CLIENTS, CLIENT_RATE = 2, 50  # steady clients, and requests per second each
# Short windows keep the suite fast; at these rates a window still holds about 75 canary
# and 225 stable requests at 25 %, where identical models stay well inside the thresholds.
TEST_PROFILE = {
    "steps": [25, 50, 100],
    "window_seconds": 3,
    "min_requests": 40,
    "max_failures": 1,
    "max_inconclusive": 2,
    "progress_deadline_seconds": 120,
    "drain_seconds": 0.5,
    "readiness_timeout_seconds": 20,  # the bento is ready in ~5 s here
}


@pytest.fixture(scope="module")
def deployment(
    reproduced_project: Path, bento_tag: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A project copy with the local target up, serving the pipeline's bento as stable."""
    project = Path(shutil.copytree(reproduced_project, tmp_path_factory.mktemp("c") / "p"))
    set_canary_profile(project, TEST_PROFILE)
    saved = os.environ.get("PYTHONPATH")
    # Serving processes must import the faulty wrappers that their models are made of.
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(FAULTY_MODELS), saved]))
    run("pr2prod", "up", bento_tag, "--port", str(free_port()), cwd=project)
    yield project
    run("pr2prod", "down", cwd=project, check=False)
    if saved is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = saved


def set_canary_profile(project: Path, changes: dict) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["canary"].update(changes)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@pytest.fixture(scope="module")
def genuine_model(deployment: Path):
    return joblib.load(deployment / "artifacts" / "model" / "model.joblib")


def release_of(project: Path, model) -> str:
    """Package `model` as a bento exactly as the pipeline would: evaluate, then bento."""
    joblib.dump(model, project / "artifacts" / "model" / "model.joblib")
    run("pr2prod", "evaluate", cwd=project)
    line = run("pr2prod", "bento", cwd=project).stdout.strip().splitlines()[-1]
    return line.split("bento ")[-1].split()[0]


def records(project: Path) -> list[dict]:
    import pandas as pd

    return (
        pd.read_csv(project / "artifacts/split/test.csv")
        .drop(columns="diagnosis")
        .to_dict(orient="records")
    )


def target(project: Path) -> LocalTarget:
    return LocalTarget(project / ".deploy" / "local")


def stable_release(project: Path) -> str:
    return target(project).running()["stable"].release


def last_decision(project: Path) -> dict:
    lines = (project / ".deploy" / "history.jsonl").read_text().splitlines()
    return json.loads(lines[-1])


def rollout(
    project: Path, release: str, during: Callable[[], None] | None = None
) -> tuple[subprocess.CompletedProcess, LoadCounts]:
    """Deploy `release` as a canary under steady client traffic; optionally act meanwhile."""
    url, rows = target(project).entry_url(), records(project)
    with ExitStack() as clients:
        loads = [clients.enter_context(SteadyLoad(url, rows, CLIENT_RATE)) for _ in range(CLIENTS)]
        helper = threading.Thread(target=during) if during else None
        if helper:
            helper.start()
        result = run("pr2prod", "deploy", "canary", release, cwd=project, check=False)
        if helper:
            helper.join()
        time.sleep(0.5)  # traffic after the decision counts too
    total = LoadCounts()
    for load in loads:
        total.sent += load.counts.sent
        total.failed += load.counts.failed
    return result, total


def test_a_good_canary_is_promoted_with_no_client_errors(deployment: Path, genuine_model) -> None:
    before = stable_release(deployment)
    retrained = faulty_models.Identical(genuine_model, nonce=1)  # new version, same answers
    release = release_of(deployment, retrained)

    result, clients = rollout(deployment, release)

    assert result.returncode == 0, result.stdout + result.stderr
    assert last_decision(deployment)["decision"] == "promoted"
    assert stable_release(deployment) == release != before
    assert clients.sent > 500 and clients.failed == 0, clients


BAD_CANARIES = {
    "500 on every request": (lambda m: faulty_models.FailsAfter(m, after=2), "5xx"),
    "500 on 20% of requests": (lambda m: faulty_models.FailsAfter(m, after=2, share=0.2), "5xx"),
    "5x slower": (lambda m: faulty_models.Slow(m, seconds=0.1), "p99"),
    "one class for everything": (lambda m: faulty_models.OneClass(m), "diverge"),
    "shifted probabilities": (lambda m: faulty_models.Shifted(m, power=0.3), "diverge"),
    "never ready": (lambda m: faulty_models.Unsteady(m), "not ready"),
}


@pytest.mark.parametrize("fault", BAD_CANARIES, ids=str)
def test_a_bad_canary_is_rolled_back_and_clients_see_no_errors(
    fault: str, deployment: Path, genuine_model
) -> None:
    wrap, reason = BAD_CANARIES[fault]
    stable = stable_release(deployment)
    release = release_of(deployment, wrap(genuine_model))
    set_canary_profile(deployment, {"progress_deadline_seconds": 120})

    result, clients = rollout(deployment, release)

    decision = last_decision(deployment)
    assert result.returncode == 1, result.stdout + result.stderr
    assert decision["decision"] == "rolled-back" and decision["release"] == release
    assert reason in decision["reason"].lower(), decision["reason"]
    assert stable_release(deployment) == stable
    assert "canary" not in target(deployment).running()
    assert clients.failed == 0, clients


def test_a_canary_that_crashes_mid_rollout_is_rolled_back(deployment: Path, genuine_model) -> None:
    stable = stable_release(deployment)
    release = release_of(deployment, faulty_models.Identical(genuine_model, nonce=2))

    def crash_the_canary() -> None:
        """Once the canary has passed a window with traffic, kill its whole process group."""
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if _windows_done(deployment) >= 1:
                state = json.loads((deployment / ".deploy/local/state.json").read_text())
                os.killpg(state["canary"]["pid"], signal.SIGKILL)  # started in its own session
                return
            time.sleep(0.2)

    result, clients = rollout(deployment, release, during=crash_the_canary)

    assert result.returncode == 1, result.stdout + result.stderr
    assert last_decision(deployment)["decision"] == "rolled-back"
    assert "unreachable" in last_decision(deployment)["reason"]
    assert stable_release(deployment) == stable
    assert clients.failed == 0, clients


def _windows_done(project: Path) -> int:
    rollout_file = project / ".deploy" / "rollout.json"
    try:
        return len(json.loads(rollout_file.read_text())["windows"])
    except (FileNotFoundError, json.JSONDecodeError):
        return 0


def test_manual_rollback_returns_to_an_earlier_good_release(deployment: Path) -> None:
    good = [d["release"] for d in map(json.loads, history_lines(deployment)) if d["decision"]
            in ("first-deploy", "promoted", "manual-rollback")]  # fmt: skip
    current = stable_release(deployment)
    previous = [release for release in good if release != current][-1]

    with SteadyLoad(target(deployment).entry_url(), records(deployment), CLIENT_RATE) as load:
        run("pr2prod", "rollback", cwd=deployment)
        assert stable_release(deployment) == previous
        run("pr2prod", "rollback", "--to", current, cwd=deployment)

    assert stable_release(deployment) == current
    assert last_decision(deployment)["decision"] == "manual-rollback"
    assert load.counts.failed == 0, load.counts
    refused = run("pr2prod", "rollback", "--to", "pr2prod:0000000000000000", cwd=deployment,
                  check=False)  # fmt: skip
    assert refused.returncode == 2 and "never served as a good stable version" in refused.stderr
    status = run("pr2prod", "deploy-status", cwd=deployment).stdout
    assert "manual-rollback" in status and "promoted" in status and "rolled-back" in status


def history_lines(project: Path) -> list[str]:
    return (project / ".deploy" / "history.jsonl").read_text().splitlines()


def test_a_killed_controller_resumes_when_re_run(deployment: Path, genuine_model) -> None:
    release = release_of(deployment, faulty_models.Identical(genuine_model, nonce=3))
    url, rows = target(deployment).entry_url(), records(deployment)
    with SteadyLoad(url, rows, CLIENT_RATE) as first, SteadyLoad(url, rows, CLIENT_RATE) as second:
        controller = subprocess.Popen(
            ["pr2prod", "deploy", "canary", release], cwd=deployment, stdout=subprocess.DEVNULL
        )
        deadline = time.monotonic() + 120
        while _windows_done(deployment) < 1 and time.monotonic() < deadline:
            time.sleep(0.2)
        controller.kill()  # mid-rollout, between two windows' worth of evidence
        controller.wait(timeout=30)
        assert (deployment / ".deploy" / "rollout.json").is_file()

        again = run("pr2prod", "deploy", "canary", release, cwd=deployment, check=False)

    assert "resuming the rollout" in again.stdout
    assert again.returncode == 0, again.stdout
    assert stable_release(deployment) == release
    assert first.counts.failed + second.counts.failed == 0


def test_low_traffic_is_inconclusive_and_never_promoted(deployment: Path, genuine_model) -> None:
    stable = stable_release(deployment)
    release = release_of(deployment, faulty_models.Identical(genuine_model, nonce=4))

    result = run("pr2prod", "deploy", "canary", release, cwd=deployment, check=False)

    assert result.returncode == 1
    assert "inconclusive" in last_decision(deployment)["reason"]
    assert stable_release(deployment) == stable


def test_synthetic_load_lets_a_quiet_rollout_finish(deployment: Path, genuine_model) -> None:
    release = release_of(deployment, faulty_models.Identical(genuine_model, nonce=5))

    result = run(
        "pr2prod", "deploy", "canary", release, "--synthetic-load", "80", cwd=deployment,
        check=False,
    )  # fmt: skip

    assert result.returncode == 0, result.stdout
    assert stable_release(deployment) == release


def test_ten_canaries_of_an_identical_model_are_all_promoted(
    deployment: Path, genuine_model
) -> None:
    set_canary_profile(deployment, {"steps": [50, 100], "window_seconds": 2})
    decisions = []
    for nonce in range(10, 20):
        release = release_of(deployment, faulty_models.Identical(genuine_model, nonce=nonce))
        result, clients = rollout(deployment, release)
        decisions.append((last_decision(deployment)["decision"], clients.failed))
        assert result.returncode == 0, result.stdout  # a false rollback
    assert decisions == [("promoted", 0)] * 10
