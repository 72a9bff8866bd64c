"""Regressor canaries rolled out with real processes, judged on their predicted values.

The project is switched to the regression sample (data, schema.yaml and params.yaml only)
and its bento serves as stable. A regressor retrained with another seed is promoted; one
that answers a constant, or every value one standard deviation of the target too high
(from the start, or only once traffic reaches it), is rolled back, and no client sees
the canary fail.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import joblib
import pytest
import yaml
from conftest import QUICK_CANARY, free_port, run, set_canary_profile
from test_canary_rollouts import (
    assert_no_client_saw_the_canary_fail,
    last_decision,
    release_of,
    rollout,
    stable_release,
    target,
)

from bench import faults
from pr2prod.deploy.releases import retrained_release

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def deployment(
    reproduced_regression_project: Path,
    regression_bento_tag: str,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Path]:
    """A regression project copy with the local target up, its bento serving as stable."""
    project = Path(
        shutil.copytree(reproduced_regression_project, tmp_path_factory.mktemp("r") / "p")
    )
    set_canary_profile(project, QUICK_CANARY)
    run("pr2prod", "up", regression_bento_tag, "--port", str(free_port()), cwd=project)
    yield project
    run("pr2prod", "down", cwd=project, check=False)


@pytest.fixture(scope="module")
def genuine_model(deployment: Path):
    return joblib.load(deployment / "artifacts" / "model" / "model.joblib")


@pytest.fixture(scope="module")
def spread(deployment: Path) -> faults.TargetSpread:
    return faults.TargetSpread.of_split(
        deployment / "artifacts" / "split" / "train.csv", "progression"
    )


def test_a_retrained_regressor_is_promoted_with_no_client_errors(deployment: Path) -> None:
    before = stable_release(deployment)
    seed = yaml.safe_load((deployment / "params.yaml").read_text())["seed"] + 1
    release = retrained_release(deployment / "build" / "retrained", seed, workspace=deployment)

    result, clients = rollout(deployment, release)

    assert result.returncode == 0, result.stdout + result.stderr
    assert "diverge from stable's by 0.0" in result.stdout  # (values) before traffic
    assert last_decision(deployment)["decision"] == "promoted"
    assert stable_release(deployment) == release != before
    assert_no_client_saw_the_canary_fail(clients)


# A regressor that answers as the genuine one until traffic reaches it (the calls before
# traffic are faults.PRE_TRAFFIC_CALLS at most), then one standard deviation too high: only
# the live windows can catch it.
SHIFTED_UNDER_TRAFFIC = faults.BadRegressor(
    lambda model, spread: faults.ShiftedValues(
        model, spread.std, after=faults.PRE_TRAFFIC_CALLS + 10
    ),
    "diverge",
)
BAD_REGRESSORS = {
    **faults.BAD_REGRESSORS,
    "values shifted under traffic": SHIFTED_UNDER_TRAFFIC,
}


@pytest.mark.parametrize("name", BAD_REGRESSORS, ids=str)
def test_a_bad_regressor_is_rolled_back_and_clients_see_no_errors(
    name: str, deployment: Path, genuine_model, spread: faults.TargetSpread
) -> None:
    fault = BAD_REGRESSORS[name]
    stable = stable_release(deployment)
    release = release_of(deployment, fault.wrap(genuine_model, spread))

    result, clients = rollout(deployment, release)

    decision = last_decision(deployment)
    assert result.returncode == 1, result.stdout + result.stderr
    assert decision["decision"] == "rolled-back" and decision["release"] == release
    assert "predicted-value divergence" in decision["reason"], decision["reason"]
    if name == "values shifted under traffic":
        assert "held-out rows before traffic" in decision["reason"]  # a live window's limit
    else:
        assert decision["reason"].startswith("before any traffic")
    assert stable_release(deployment) == stable
    assert "canary" not in target(deployment).running()
    assert_no_client_saw_the_canary_fail(clients)
