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
from pr2prod.serving.reference import MISSING, UNSEEN

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
