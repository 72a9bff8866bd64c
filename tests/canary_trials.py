"""Many canary judgements for the price of one rollout: the false-rollback checks' harness.

A rollout starts a version, judges it window by window, then promotes it (stopping the old
stable) or stops it: most of its cost is starting and stopping processes, and ten rollouts
cost ten times that. Whether the analysis rolls back a canary as good as stable is a
question about the judging, so `judge_repeatedly` starts one canary next to the running
stable once and judges it many times under client traffic through the router
(`Controller.trial`: the same checks before traffic, the same windows and decision rule).

Canaries that differ only by a training seed need no process each either: the decision
depends on the seed only through the models' answers, to the held-out rows before traffic
and to the requests of each window. `seed_retrained_answers` trains each seed's model with
the pipeline's own code and has it answer the held-out rows; `judge_replayed` holds each
to the controller's rules before traffic and on windows of the live trials' sizes,
replayed from those answers.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from pr2prod import paths
from pr2prod.data.records import split_records
from pr2prod.deploy.analysis import analyse
from pr2prod.deploy.assembly import standalone_controller
from pr2prod.deploy.calibration import Reference
from pr2prod.deploy.controller import Trial
from pr2prod.deploy.load import LoadCounts, SteadyLoad
from pr2prod.deploy.local import LocalTarget
from pr2prod.deploy.observations import Snapshot, Window
from pr2prod.model.train import train_model
from pr2prod.readiness import wait_until_ready
from pr2prod.schema import FeatureSchema, load_schema
from pr2prod.serving.inference import PipelineRunner
from pr2prod.serving.telemetry import PROBABILITY_BUCKETS
from pr2prod.settings import CanarySettings, load_settings

CLIENT_RATE = 50.0  # requests per second, as the rehearsal sends
# Short trials: one window at half the traffic judges as many requests of each version as
# a rollout's first two steps together.
TRIAL_PROFILE = {"steps": (50, 100), "window_seconds": 2}


@dataclass(frozen=True)
class TrialRun:
    trial: Trial
    clients: LoadCounts  # what the clients saw while it was judged


def canary_settings(project: Path, changes: dict[str, Any] | None = None) -> CanarySettings:
    """The project's canary settings with TRIAL_PROFILE and `changes` applied."""
    settings = load_settings(project / paths.PARAMS).canary
    return replace(settings, **{**TRIAL_PROFILE, **(changes or {})})


def judge_repeatedly(
    project: Path,
    release: str,
    trials: int,
    settings: CanarySettings,
    rate: float = CLIENT_RATE,
    stable: str | None = None,
) -> list[TrialRun]:
    """Start `release` as the canary next to the stable version the project's local target
    runs (`make up`), judge it `trials` times under steady client traffic, then stop it.

    `stable`: a release to serve as stable first, in place of the running one (swapped
    without a rollout): a canary is best judged against a stable served the same way.
    The controller keeps its state apart (build/trials/), so the project's deployment
    history is untouched.
    """
    target = LocalTarget(project / paths.DEPLOY_STATE / "local", settings=settings)
    if stable is not None and target.running()["stable"].release != stable:
        swap_stable(target, stable, settings.readiness_timeout_seconds)
    with contextlib.chdir(project):  # the controller reads the held-out rows from here
        controller = standalone_controller(
            target, settings, project / "build" / "trials", say=lambda line: None
        )
        rows = controller.reference_records
    runs = []
    target.start_canary(release)
    try:
        for _ in range(trials):
            with SteadyLoad(target.entry_url(), rows, rate) as clients:
                trial = controller.trial(release)
            runs.append(TrialRun(trial, clients.counts))
    finally:
        target.abort_canary(release)
    return runs


def judge_without_the_latency_cap(
    project: Path, stable: str, release: str, trials: int = 10
) -> list[TrialRun]:
    """`judge_repeatedly` with `stable` serving and the absolute latency cap out of the way.

    The cap is a service-level objective, not a comparison of the two versions: on a busy
    shared machine both can miss it together, which says nothing about the canary.
    """
    settings = canary_settings(project)
    relaxed = replace(settings, thresholds=replace(settings.thresholds, latency_p99_max_ms=5000))
    return judge_repeatedly(project, release, trials, relaxed, stable=stable)


def swap_stable(target: LocalTarget, release: str, ready_timeout: float) -> None:
    """`release` serves as stable, in place of the one running, without any analysis."""
    canary = target.start_canary(release)
    wait_until_ready(canary.url, ready_timeout)
    target.set_canary_weight(100, release)
    target.promote(release)


def assert_all_promoted(runs: Sequence[TrialRun]) -> None:
    """Every trial would have promoted its canary, and no client saw the canary fail."""
    problems = [run.trial.problem for run in runs]
    rolled_back = [f"trial {index}: {problem}" for index, problem in enumerate(problems) if problem]
    windows = [run.trial.windows for run in runs]
    assert rolled_back == [], "\n".join([*rolled_back, f"windows judged: {windows}"])
    for run in runs:
        assert run.clients.failed_by.get("canary", 0) == 0, run.clients


def window_sizes(runs: Sequence[TrialRun]) -> list[tuple[int, int]]:
    """(stable, canary) requests of every window the live trials judged."""
    return [
        (int(window.figures["stable_requests"]), int(window.figures["canary_requests"]))
        for run in runs
        for window in run.trial.windows
    ]


def answers(model_path: Path, schema: FeatureSchema, records: list[dict]) -> np.ndarray:
    """The model's probabilities for `records`, in the schema's class order (its compiled
    graph, which serves when it compiles, answers within the parity `make bento` checks)."""
    return PipelineRunner(joblib.load(model_path), schema).probabilities(records)


def seed_retrained_answers(project: Path, seeds: Sequence[int]) -> list[np.ndarray]:
    """For each seed, the pipeline's model retrained with it (as `pr2prod train` would,
    params.yaml's seed changed) answering the held-out rows."""
    settings = load_settings(project / paths.PARAMS)
    schema = load_schema(project / paths.SCHEMA)
    records = split_records(project / paths.TEST_SPLIT, schema)
    scratch = project / "build" / "seed-models"
    scratch.mkdir(parents=True, exist_ok=True)
    found = []
    for seed in seeds:
        model_path = scratch / f"model-{seed}.joblib"
        train_model(
            replace(settings, seed=seed),
            schema,
            project / paths.TRAIN_SPLIT,
            model_path,
            scratch / f"card-{seed}.json",
        )
        found.append(answers(model_path, schema, records))
    return found


def pipeline_answers(project: Path) -> np.ndarray:
    """The pipeline's own model answering the held-out rows."""
    schema = load_schema(project / paths.SCHEMA)
    return answers(project / paths.MODEL, schema, split_records(project / paths.TEST_SPLIT, schema))


def answered_window(probabilities: np.ndarray, classes: Sequence[str]) -> Window:
    """What a version's /metrics counts over a window whose requests it answered with these
    probabilities (a row per request): predicted classes and probability histograms."""
    bounds = (*PROBABILITY_BUCKETS, math.inf)
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    requests = float(len(probabilities))
    return Window(
        Snapshot(
            requests_by_status={"200": requests},
            latency_buckets={0.01: requests, math.inf: requests},
            predicted={name: float((predicted == name).sum()) for name in set(predicted)},
            probability_buckets={
                name: {bound: float((probabilities[:, c] <= bound).sum()) for bound in bounds}
                for c, name in enumerate(classes)
            },
        )
    )


def replayed_window(
    stable: np.ndarray, canary: np.ndarray, sizes: tuple[int, int], classes, seed: int
) -> tuple[Window, Window]:
    """One window of traffic drawn from the held-out rows, split between the two versions."""
    rng = np.random.default_rng(seed)
    rows = len(stable)
    return (
        answered_window(stable[rng.integers(0, rows, sizes[0])], classes),
        answered_window(canary[rng.integers(0, rows, sizes[1])], classes),
    )


def judge_replayed(
    stable: np.ndarray,
    canary: np.ndarray,
    classes: Sequence[str],
    settings: CanarySettings,
    sizes: Sequence[tuple[int, int]],
) -> list[str]:
    """Why the controller would roll back a canary answering `canary` where stable answers
    `stable` (the held-out rows): before traffic, or in any window of `sizes`, replayed
    from those answers. Empty when it would be promoted."""
    reference = Reference(tuple(classes), stable, canary)
    problems = reference.offline().beyond(settings.thresholds.prediction_divergence_max)
    for seed, size in enumerate(sizes):
        windows = replayed_window(stable, canary, size, classes, seed)
        result = analyse(*windows, settings.thresholds, settings.min_requests, reference=reference)
        if result.outcome != "pass":
            problems += result.reasons
    return problems
