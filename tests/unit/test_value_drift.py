"""A regressor's prediction drift: live predicted values against its test-set predictions.

Each simulated window draws the model's test-set predictions (the reference, in buckets at
their deciles) and live predictions, counts the live ones in a Prometheus histogram with the
reference's bounds as the service does, reads it back as /metrics text and runs the
comparison `pr2prod monitor` runs.
"""

from __future__ import annotations

import math

import numpy as np
from prometheus_client import CollectorRegistry, Histogram, generate_latest

from pr2prod.deploy.observations import parse_samples
from pr2prod.monitor.drift import DRIFT, NO_DRIFT, NOT_ENOUGH_DATA, compare
from pr2prod.monitor.live import live_counts
from pr2prod.release.reference import VALUE_BUCKETS, value_reference
from pr2prod.serving.reference import Reference
from pr2prod.serving.telemetry import PREDICTED_VALUE
from pr2prod.settings import MonitorSettings

TEST_ROWS = 111  # the regression sample's test split
SETTINGS = MonitorSettings(alpha=0.01, min_rows=200)
MEAN, SPREAD = 150.0, 50.0  # the predictions' mean and standard deviation


def predictions(rng: np.random.Generator, rows: int) -> np.ndarray:
    """A fixed 'model' on random inputs: skewed values, as a progression score's are."""
    return MEAN + SPREAD * (rng.gamma(4.0, size=rows) - 4.0) / 2.0


def drift_of(seed: int, live_rows: int, change=lambda values: values):
    rng = np.random.default_rng(seed)
    reference = Reference(
        rows=300, features={}, predictions=value_reference(predictions(rng, TEST_ROWS))
    )
    registry = CollectorRegistry()
    histogram = Histogram(
        PREDICTED_VALUE,
        "",
        ["model_version"],
        buckets=reference.predictions.value_bounds,
        registry=registry,
    )
    for value in change(predictions(rng, live_rows)):
        histogram.labels("v").observe(float(value))
    live = live_counts(parse_samples(generate_latest(registry).decode()))["v"]
    return compare(reference, live, "v", 1.0, SETTINGS), reference, live


def test_the_reference_buckets_are_the_deciles_of_the_test_predictions() -> None:
    values = predictions(np.random.default_rng(0), TEST_ROWS)

    reference = value_reference(values)

    assert len(reference.value_bounds) == VALUE_BUCKETS - 1
    assert sum(reference.values) == reference.rows == TEST_ROWS
    assert max(reference.values) - min(reference.values) <= 2  # a tenth of the rows each
    assert value_reference(np.full(20, 7.5)).value_bounds == (7.5,)  # one value: two buckets


def test_live_values_are_read_back_in_the_reference_buckets() -> None:
    result, reference, live = drift_of(0, 500)

    (finding,) = result.findings
    assert finding.name == "predicted value" and finding.kind == "prediction"
    assert live.rows == 500
    assert list(finding.reference) == [*map(str, reference.predictions.value_bounds), "inf"]
    assert sum(finding.live.values()) == 500
    assert sorted(live.value_counts()) == [*reference.predictions.value_bounds, math.inf]


def test_unshifted_values_alarm_within_the_nominal_rate() -> None:
    """200 clean windows of 500 records: alarms at about alpha (1%)."""
    alarms = sum(drift_of(seed, 500)[0].verdict == DRIFT for seed in range(200))
    # Binomial(200, 0.01): more than 7 alarms has probability below 0.001.
    assert alarms <= 7, f"{alarms} alarms in 200 clean windows at alpha 0.01"


def test_values_shifted_by_half_their_standard_deviation_are_found() -> None:
    # The reference is 111 test rows: its own noise leaves smaller shifts often unproven.
    caught = [drift_of(seed, 500, lambda v: v + 0.5 * SPREAD)[0] for seed in range(20)]

    assert sum(result.verdict == DRIFT for result in caught) >= 19
    assert {finding.name for result in caught for finding in result.drifted} == {"predicted value"}


def test_one_value_for_everything_is_found() -> None:
    result, _, _ = drift_of(1, 300, lambda v: np.full(len(v), MEAN))

    assert result.verdict == DRIFT


def test_few_values_are_not_enough_data_and_clean_ones_no_drift() -> None:
    assert drift_of(2, 150, lambda v: v + SPREAD)[0].verdict == NOT_ENOUGH_DATA
    assert drift_of(3, 500)[0].verdict == NO_DRIFT
