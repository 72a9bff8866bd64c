"""Seed-retrained canaries on a forker's small data are promoted, with real processes.

A project is adapted to a fixture dataset (data, schema.yaml and params.yaml only), its
pipeline reproduced and its bento served as stable; then the model retrained with other
seeds is rolled out as a canary, one after another, under steady client traffic. Each is
as good as stable and must be promoted: on a small three-class set and on the mixed one,
a fixed divergence limit rolled such canaries back.

On the mixed set one such canary is rolled out for real. Then, on each set, ten canaries:
the first seed's is started once next to stable and judged ten times under the same traffic
(tests/canary_trials.py: the controller's checks and windows, without restarting a process
for each), and the models of ten more seeds, trained by the pipeline's code, are each held
to the controller's rules before traffic and on windows of the sizes those live trials
judged, replayed from their answers to the held-out rows.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from canary_trials import (
    assert_all_promoted,
    canary_settings,
    judge_repeatedly,
    judge_replayed,
    pipeline_answers,
    seed_retrained_answers,
    window_sizes,
)
from conftest import (
    QUICK_CANARY,
    copy_project,
    free_port,
    run,
    set_canary_profile,
    use_fixture_data,
)

from pr2prod.data.records import split_records
from pr2prod.deploy.load import LoadCounts, SteadyLoad
from pr2prod.deploy.local import LocalTarget
from pr2prod.deploy.releases import retrained_release
from pr2prod.schema import load_schema

pytestmark = pytest.mark.integration

CLIENT_RATE = 50  # requests per second, as the rehearsal sends
TRIALS = SEEDS = 10  # canaries judged per dataset, live and replayed


@pytest.fixture(scope="module")
def adapted(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    """A project adapted to a fixture dataset, its bento serving as stable."""
    project = copy_project(tmp_path_factory.mktemp(request.param))
    use_fixture_data(project, request.param)
    set_canary_profile(project, QUICK_CANARY)
    run("dvc", "repro", cwd=project)
    tag = run("pr2prod", "bento", cwd=project).stdout.split("bento ")[-1].split()[0]
    run("pr2prod", "up", tag, "--port", str(free_port()), cwd=project)
    yield project
    run("pr2prod", "down", cwd=project, check=False)


def roll_out_retrained(project: Path, seeds: range) -> Iterator[tuple[str, str, LoadCounts]]:
    """Roll out the model retrained with each seed in turn: (decision, reason, clients)."""
    target = LocalTarget(project / ".deploy" / "local")
    rows = split_records(
        project / "artifacts" / "split" / "test.csv", load_schema(project / "schema.yaml")
    )
    for seed in seeds:
        folder = project / "build" / f"seed-{seed}"
        release = retrained_release(folder, seed, workspace=project)
        with SteadyLoad(target.entry_url(), rows, CLIENT_RATE) as clients:
            result = run("pr2prod", "deploy", "canary", release, cwd=project, check=False)
        shutil.rmtree(folder)
        history = (project / ".deploy" / "history.jsonl").read_text().splitlines()
        decision = yaml.safe_load(history[-1])
        assert decision["release"] == release, result.stdout + result.stderr
        yield decision["decision"], decision["reason"], clients.counts


def first_seed(project: Path) -> int:
    return int(yaml.safe_load((project / "params.yaml").read_text())["seed"]) + 1


def assert_promoted(outcomes: list[tuple[str, str, LoadCounts]]) -> None:
    assert [decision for decision, _, _ in outcomes] == ["promoted"] * len(outcomes), [
        reason for _, reason, _ in outcomes
    ]
    for _, _, clients in outcomes:
        assert clients.failed_by.get("canary", 0) == 0, clients


# The three-class set's suite run is `make run`'s rehearsal in tests/integration/test_pipeline.py
# (its stable is the model retrained with the next seed).
@pytest.mark.parametrize("adapted", ["mixed"], indirect=True)
def test_a_seed_retrained_canary_is_promoted(adapted: Path) -> None:
    seed = first_seed(adapted)
    assert_promoted(list(roll_out_retrained(adapted, range(seed, seed + 1))))


@pytest.mark.parametrize("adapted", ["three_class", "mixed"], indirect=True)
def test_ten_seed_retrained_canaries_are_all_promoted(adapted: Path) -> None:
    seed = first_seed(adapted) + 1
    release = retrained_release(adapted / "build" / f"seed-{seed}", seed, workspace=adapted)
    settings = canary_settings(adapted)

    live = judge_repeatedly(adapted, release, TRIALS, settings)

    assert_all_promoted(live)
    sizes = window_sizes(live)
    stable = pipeline_answers(adapted)
    classes = load_schema(adapted / "schema.yaml").target.classes
    retrained = seed_retrained_answers(adapted, range(seed + 1, seed + 1 + SEEDS))
    problems = {
        seed + 1 + offset: judge_replayed(stable, canary, classes, settings, sizes)
        for offset, canary in enumerate(retrained)
    }
    assert {seed: found for seed, found in problems.items() if found} == {}, problems
