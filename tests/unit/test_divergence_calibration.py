"""The calibrated prediction-divergence rule, on simulated windows of a small three-class set.

Stable and canary are random forests trained on the same 130 rows with different seeds: an
honest retraining. Held to limits simulated from both models' answers to the held-out
rows, such canaries pass whatever the window sizes, while
a canary that predicts one class, flattens its probabilities, or behaves live unlike it
did on the held-out rows, still fails.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from canary_trials import replayed_window
from conftest import FIXTURES
from sklearn.model_selection import train_test_split

from pr2prod.data.validation import load_typed
from pr2prod.deploy import calibration
from pr2prod.deploy.analysis import analyse
from pr2prod.deploy.calibration import Reference
from pr2prod.model.estimator import make_estimator
from pr2prod.model.pipeline import build_pipeline
from pr2prod.schema import load_schema
from pr2prod.serving.telemetry import PROBABILITY_BUCKETS
from pr2prod.settings import Thresholds, TrainSettings

THREE_CLASS = FIXTURES / "three_class"
SCHEMA = load_schema(THREE_CLASS / "schema.yaml")
CLASSES = SCHEMA.target.classes
DEFAULTS = Thresholds()
BOUNDS = (*PROBABILITY_BUCKETS, math.inf)


def answers(seed: int, train: pd.DataFrame, test: pd.DataFrame) -> np.ndarray:
    """A forest trained with `seed`: its probabilities for the test rows, in schema order."""
    settings = TrainSettings(
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 100, "min_samples_leaf": 2, "n_jobs": 1},
    )
    estimator = make_estimator(settings, seed)
    model = build_pipeline(SCHEMA, estimator).fit(
        train[SCHEMA.feature_names], train[SCHEMA.target.name]
    )
    order = [list(model.classes_).index(name) for name in CLASSES]
    return model.predict_proba(test[SCHEMA.feature_names])[:, order]


@pytest.fixture(scope="module")
def retrained() -> tuple[np.ndarray, list[np.ndarray]]:
    """Stable's answers to the 44 held-out rows, and those of five seed-retrained models."""
    data = load_typed(THREE_CLASS / "plants.csv", SCHEMA)
    train, test = train_test_split(
        data, test_size=0.25, random_state=11, stratify=data[SCHEMA.target.name]
    )
    return answers(11, train, test), [answers(seed, train, test) for seed in range(12, 17)]


def live(stable: np.ndarray, canary: np.ndarray, sizes: tuple[int, int], seed: int):
    """One window of traffic replaying the held-out rows, split between the two versions."""
    return replayed_window(stable, canary, sizes, CLASSES, seed)


def flattened(probabilities: np.ndarray) -> np.ndarray:
    shifted = probabilities**0.3
    return shifted / shifted.sum(axis=1, keepdims=True)


WINDOW_SIZES = [(100, 100), (150, 50), (450, 50), (50, 50)]


@pytest.mark.parametrize("sizes", WINDOW_SIZES)
def test_calibrated_honest_retrainings_pass(retrained, sizes: tuple[int, int]) -> None:
    stable, canaries = retrained
    failed = []
    for canary in canaries:
        reference = Reference(CLASSES, stable, canary)
        assert not reference.offline().beyond(DEFAULTS.prediction_divergence_max)
        for seed in range(60):
            result = analyse(*live(stable, canary, sizes, seed), DEFAULTS, 50, reference=reference)
            if result.outcome != "pass":
                failed.append(result.reasons)
    assert failed == []


def test_a_broken_canary_already_diverges_on_the_held_out_rows(retrained) -> None:
    stable, (canary, *_) = retrained
    one_class = np.tile([1.0, 0.0, 0.0], (len(stable), 1))
    for broken, word in ((one_class, "predicted-class"), (flattened(canary), "probability")):
        found = Reference(CLASSES, stable, broken).offline().beyond(0.1)
        assert found and any(word in reason for reason in found)


@pytest.mark.parametrize("sizes", [(100, 100), (150, 50), (450, 50)])
def test_a_canary_that_answers_live_unlike_before_traffic_fails(
    retrained, sizes: tuple[int, int]
) -> None:
    """It answered the held-out rows as the retrained model does, then flattens live."""
    stable, (canary, *_) = retrained
    reference = Reference(CLASSES, stable, canary)
    outcomes = [
        analyse(*live(stable, flattened(canary), sizes, seed), DEFAULTS, 50, reference=reference)
        for seed in range(50)
    ]
    failing = [result for result in outcomes if result.outcome == "fail"]
    assert len(failing) >= 0.9 * len(outcomes)
    assert all("divergence" in result.reasons[0] for result in failing)
    assert "held-out rows before traffic" in failing[0].reasons[0]


def test_the_limit_grows_with_fewer_requests_and_fewer_distinct_inputs(retrained) -> None:
    stable, (canary, *_) = retrained
    reference = Reference(CLASSES, stable, canary)
    many, few = reference.live_limits(400, 400), reference.live_limits(50, 50)
    assert many.probabilities is not None and few.probabilities is not None
    assert few.probabilities > many.probabilities
    narrow = reference.live_limits(400, 400, distinct_inputs=8)
    assert narrow.probabilities is not None and narrow.probabilities > many.probabilities


def test_limits_are_the_same_on_every_run(retrained) -> None:
    stable, (canary, *_) = retrained
    first = Reference(CLASSES, stable, canary).live_limits(120, 80)
    assert Reference(CLASSES, stable, canary).live_limits(120, 80) == first
    assert first.classes is not None and first.classes >= calibration.LIMIT_FLOOR
