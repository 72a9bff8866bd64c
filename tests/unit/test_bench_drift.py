"""The pieces of `python -m bench.drift`: binning as the service bins, both detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.drift import (
    NEW_CATEGORY,
    Dataset,
    baseline_alarms,
    baseline_score,
    bin_labels,
    mean_shift,
    mixed_data,
    ours_alarms,
    replaced_in_share,
    traffic,
    unchanged,
)
from bench.drift_answers import (
    Answers,
    labelled_stream,
    performance_alarms,
    prediction_alarms,
    prediction_counts,
    relabelling,
)
from pr2prod.release.reference import prediction_reference
from pr2prod.serving.reference import MISSING, UNSEEN
from pr2prod.settings import load_settings

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def mixed() -> Dataset:
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        return mixed_data(seed=3, population="train")


def test_records_fall_in_the_bins_the_service_counts_them_in(mixed: Dataset) -> None:
    frame = traffic(mixed, unchanged, 50, np.random.default_rng(0))
    frame.loc[0, "age"] = None
    frame.loc[1, "region"] = NEW_CATEGORY
    labels = bin_labels(mixed, frame)

    age = mixed.reference["age"]
    for value, label in zip(frame["age"][1:], labels["age"][1:], strict=True):
        assert label == (MISSING if value is None or value != value else str(age.bin_of(value)))
    assert labels["age"][0] == MISSING
    assert labels["region"][1] == UNSEEN
    assert set(labels["grade"]) <= {"1", "2", "3"}


def test_our_monitor_is_quiet_on_clean_traffic_and_catches_a_new_category(mixed: Dataset) -> None:
    clean = traffic(mixed, unchanged, 1000, np.random.default_rng(1))
    assert ours_alarms(mixed, bin_labels(mixed, clean), 1000) == []

    new = replaced_in_share("region", 0.2, NEW_CATEGORY)
    shifted = traffic(mixed, new, 1000, np.random.default_rng(2))
    alarms = ours_alarms(mixed, bin_labels(mixed, shifted), 1000, first_only=True)
    assert len(alarms) == 1 and alarms[0] <= 300


def test_the_baseline_scores_a_shift_by_its_normed_wasserstein_distance(mixed: Dataset) -> None:
    assert baseline_score(mixed, "debt_ratio", mixed.train["debt_ratio"]) == pytest.approx(0)
    rng = np.random.default_rng(4)
    shifted = traffic(mixed, mean_shift(mixed, "debt_ratio", 0.5), 500, rng)
    # A pure shift of 0.5 sd; 500 draws from a few hundred rows blur it by about 0.15.
    assert baseline_score(mixed, "debt_ratio", shifted["debt_ratio"]) > 0.3
    assert baseline_alarms(mixed, shifted) == [500]


def synthetic_answers(rows: int = 200) -> Answers:
    """A binary model's answers to `rows` held-out rows, right about nine times in ten."""
    rng = np.random.default_rng(8)
    actual = rng.integers(0, 2, rows)
    positive = np.clip(np.where(actual == 0, 0.8, 0.2) + rng.normal(0, 0.15, rows), 0.01, 0.99)
    genuine = np.column_stack([positive, 1 - positive])
    squashed = genuine**0.3
    classes = ["yes", "no"]
    labels = np.array(classes)[actual]
    reference = prediction_reference(genuine, classes, labels, "yes")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO_ROOT)
        settings = load_settings()
    return Answers(
        classes,
        genuine,
        squashed / squashed.sum(axis=1, keepdims=True),
        actual,
        reference,
        settings,
    )


def test_answers_are_counted_as_the_service_counts_them() -> None:
    answers = synthetic_answers()
    live = prediction_counts(answers.genuine[:10], answers)

    assert live.rows == 10
    assert sum(live.probability_counts("yes").values()) == 10
    assert live.predicted == {
        label: float((answers.genuine[:10].argmax(axis=1) == i).sum())
        for i, label in enumerate(answers.classes)
    }


def test_squashed_probabilities_alarm_and_the_genuine_answers_do_not() -> None:
    answers = synthetic_answers()
    rng = np.random.default_rng(1)
    drawn = rng.integers(0, 200, 1000)

    shifted = prediction_alarms(answers, answers.shifted[drawn], 50, 500, 0.004, 100, True)
    assert shifted and shifted[0] <= 300
    assert prediction_alarms(answers, answers.genuine[drawn], 50, 500, 0.004, 100) == []


def test_changed_labels_alarm_on_live_performance_and_correct_ones_do_not() -> None:
    answers = synthetic_answers()
    _, share = relabelling(answers)
    rng = np.random.default_rng(2)

    predicted, actual = labelled_stream(answers, 1000, rng, share)
    right_before = np.mean(answers.genuine.argmax(axis=1) == answers.actual)
    assert np.mean(predicted == actual) == pytest.approx(right_before - 0.10, abs=0.04)
    assert performance_alarms(answers, predicted, actual, 50, 0.004, True) != []

    predicted, actual = labelled_stream(answers, 1000, rng, 0.0)
    assert performance_alarms(answers, predicted, actual, 50, 0.004) == []
