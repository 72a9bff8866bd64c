"""Drift detection in simulation: calibrated false alarms, real shifts found, small samples quiet.

Each simulated window draws a training sample (the reference) and live traffic from a known
population, counts the traffic as the service does (FeatureStatistics into a Prometheus
registry, read back as /metrics text) and runs the comparison `pr2prod monitor` runs.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from prometheus_client import CollectorRegistry, Counter, generate_latest

from pr2prod.deploy.observations import parse_samples
from pr2prod.monitor.detectors import g_test, holm_adjusted, merge_sparse
from pr2prod.monitor.drift import DRIFT, NO_DRIFT, NOT_ENOUGH_DATA, compare
from pr2prod.monitor.live import LiveCounts, live_counts
from pr2prod.release.reference import feature_reference, prediction_reference
from pr2prod.schema import Feature
from pr2prod.serving.reference import Reference
from pr2prod.serving.telemetry import PROBABILITY_BUCKETS, FeatureStatistics
from pr2prod.settings import MonitorSettings

NUMERIC = [f"x{i}" for i in range(8)]
COLOURS = ("red", "green", "blue")
FEATURES = [Feature(name, "numeric", nullable=True) for name in NUMERIC] + [
    Feature("colour", "categorical", nullable=True, categories=COLOURS)
]
TRAINING_ROWS, TEST_ROWS = 455, 114  # the sample data's split
SETTINGS = MonitorSettings(alpha=0.01, min_rows=200)


def population(rng: np.random.Generator, rows: int, shift: float = 0.0) -> pd.DataFrame:
    frame = pd.DataFrame({name: rng.normal(size=rows) for name in NUMERIC})
    frame["x0"] += shift
    frame["colour"] = rng.choice(COLOURS, size=rows, p=[0.5, 0.3, 0.2])
    return frame


def probabilities(frame: pd.DataFrame) -> np.ndarray:
    """A fixed 'model': the first class's probability rises with x0 + x1."""
    first = 1 / (1 + np.exp(-(frame["x0"] + frame["x1"]).to_numpy()))
    return np.column_stack([first, 1 - first])


def reference_from(training: pd.DataFrame, test: pd.DataFrame) -> Reference:
    return Reference(
        rows=len(training),
        features={f.name: feature_reference(training[f.name], f) for f in FEATURES},
        predictions=prediction_reference(probabilities(test), ["yes", "no"]),
    )


def served(reference: Reference, traffic: pd.DataFrame) -> LiveCounts:
    """The traffic counted by the service's code and read back from /metrics text."""
    registry = CollectorRegistry()
    values = Counter(
        "pr2prod_feature_values", "", ["feature", "bin", "model_version"], registry=registry
    )
    FeatureStatistics(reference, values, "v").observe(
        traffic.astype(object).where(traffic.notna(), None).to_dict("records")
    )
    live = live_counts(parse_samples(generate_latest(registry).decode()))["v"]
    scores = probabilities(traffic)
    predicted = np.where(scores[:, 0] >= scores[:, 1], "yes", "no")
    live.predicted = {label: float((predicted == label).sum()) for label in ("yes", "no")}
    for column, label in enumerate(("yes", "no")):
        live.probabilities[label] = {
            bound: float((scores[:, column] <= bound).sum()) for bound in PROBABILITY_BUCKETS
        } | {float("inf"): float(len(traffic))}
    return live


def window(seed: int, live_rows: int, change=lambda frame: frame) -> list:
    rng = np.random.default_rng(seed)
    reference = reference_from(population(rng, TRAINING_ROWS), population(rng, TEST_ROWS))
    live = served(reference, change(population(rng, live_rows)))
    return compare(reference, live, "v", 1.0, SETTINGS)


def test_unshifted_traffic_alarms_within_the_nominal_rate() -> None:
    """200 clean windows of 500 records: alarms at about alpha (1%), all tests together."""
    alarms = sum(window(seed, 500).verdict == DRIFT for seed in range(200))
    # Binomial(200, 0.01): more than 7 alarms has probability below 0.001.
    assert alarms <= 7, f"{alarms} alarms in 200 clean windows at alpha 0.01"


def test_a_half_sd_shift_in_one_feature_is_found_and_named() -> None:
    caught = [window(seed, 500, lambda f: f.assign(x0=f["x0"] + 0.5)) for seed in range(20)]
    assert sum(result.verdict == DRIFT for result in caught) >= 19
    named = {finding.name for result in caught for finding in result.drifted}
    assert "x0" in named and not named & set(NUMERIC[2:])


def test_a_feature_going_missing_or_a_new_category_is_found() -> None:
    def missing(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame.sample(frac=0.1, random_state=0).index, "x3"] = np.nan
        return frame

    def unseen(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[frame.sample(frac=0.05, random_state=0).index, "colour"] = "ultraviolet"
        return frame

    went_missing = window(1, 300, missing)
    assert [f.name for f in went_missing.drifted] == ["x3"]
    assert went_missing.drifted[0].test == "Fisher: missing share"
    new_category = window(2, 300, unseen)
    assert [f.name for f in new_category.drifted] == ["colour"]
    assert new_category.drifted[0].test == "Fisher: unseen category share"


def test_predictions_drift_when_the_inputs_behind_them_do() -> None:
    result = window(3, 1000, lambda f: f.assign(x0=f["x0"] + 1.0, x1=f["x1"] + 1.0))
    drifted = {finding.name for finding in result.drifted}
    assert {"x0", "x1", "probability of yes"} <= drifted


def test_few_records_are_not_enough_data_never_an_alarm() -> None:
    result = window(4, 150, lambda f: f.assign(x0=f["x0"] + 3.0))
    assert result.verdict == NOT_ENOUGH_DATA
    assert {finding.verdict for finding in result.findings} == {NOT_ENOUGH_DATA}


def test_clean_traffic_gets_a_no_drift_verdict_with_every_finding_tested() -> None:
    result = window(5, 500)
    assert result.verdict == NO_DRIFT
    assert all(finding.p_value is not None for finding in result.findings)
    assert {finding.kind for finding in result.findings} == {"feature", "prediction"}


def test_sparse_bins_merge_until_every_expected_count_is_large_enough() -> None:
    table = merge_sparse(np.array([50.0, 1, 1, 50]), np.array([10.0, 0, 1, 9]), ordered=True)
    expected = table.sum(axis=0) * table.sum(axis=1, keepdims=True) / table.sum()
    assert table.shape[1] < 4 and expected.min() >= 5
    assert table.sum() == 122  # nothing lost
    with pytest.raises(Exception, match="two bins"):
        g_test([100.0, 100.0], [1.0, 1.0], ordered=True)


def test_holm_adjusts_in_step_down_order() -> None:
    assert holm_adjusted([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])


def test_features_the_service_did_not_count_are_not_enough_data_not_no_drift() -> None:
    """A model served without a reference exports predictions but no feature series."""
    rng = np.random.default_rng(8)
    reference = reference_from(population(rng, TRAINING_ROWS), population(rng, TEST_ROWS))
    live = served(reference, population(rng, 500))
    live.features = {}

    result = compare(reference, live, "v", 1.0, SETTINGS)

    verdicts = {finding.name: finding.verdict for finding in result.findings}
    assert {verdicts[name] for name in [*NUMERIC, "colour"]} == {NOT_ENOUGH_DATA}
    assert verdicts["predicted class"] == NO_DRIFT
