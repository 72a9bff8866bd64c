"""The calibrated prediction-divergence rule for a regressor, on simulated windows.

Stable and canary are random forests trained on the same rows of the regression sample
(scikit-learn's diabetes data) with different seeds: an honest retraining. Each version
counts its predicted values in buckets of its own, at the deciles of its own answers to
the held-out rows, as a served regressor's /metrics does. Held to limits simulated from
both versions' answers, such canaries pass whatever the window sizes, while a constant
predictor, or one shifted by a standard deviation (before traffic or only under it), fails.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import FIXTURES
from sklearn.model_selection import train_test_split

from pr2prod.data.validation import load_typed
from pr2prod.deploy import calibration
from pr2prod.deploy.analysis import analyse
from pr2prod.deploy.calibration import ValueReference
from pr2prod.deploy.divergence import regrid, value_divergence
from pr2prod.deploy.history import Decision, History, WindowRecord, windows_table
from pr2prod.deploy.observations import Snapshot, Window, parse_metrics
from pr2prod.model.estimator import make_estimator
from pr2prod.model.pipeline import build_pipeline
from pr2prod.schema import load_schema
from pr2prod.settings import Thresholds, TrainSettings

REGRESSION = FIXTURES / "regression"
SCHEMA = load_schema(REGRESSION / "schema.yaml")
DEFAULTS = Thresholds()
MIN_REQUESTS = 50
INF = math.inf


def answers(seed: int, train, test) -> np.ndarray:
    """A forest trained with `seed`: its predicted values for the test rows."""
    settings = TrainSettings(
        "sklearn.ensemble.RandomForestRegressor",
        {"n_estimators": 100, "min_samples_leaf": 5, "n_jobs": 1},
    )
    estimator = make_estimator(settings, seed, numeric_target=True)
    model = build_pipeline(SCHEMA, estimator).fit(
        train[SCHEMA.feature_names], train[SCHEMA.target.name]
    )
    return model.predict(test[SCHEMA.feature_names])


@pytest.fixture(scope="module")
def retrained() -> tuple[np.ndarray, list[np.ndarray]]:
    """Stable's answers to the 111 held-out rows, and those of four seed-retrained models."""
    data = load_typed(REGRESSION / "diabetes.csv", SCHEMA)
    train, test = train_test_split(data, test_size=0.25, random_state=5)
    return answers(5, train, test), [answers(seed, train, test) for seed in range(6, 10)]


def own_bounds(values: np.ndarray) -> tuple[float, ...]:
    """A version's value buckets: the deciles of its answers to the held-out rows."""
    deciles = np.unique(np.quantile(values, [step / 10 for step in range(1, 10)]))
    return (*deciles.tolist(), INF)


def window(values: np.ndarray, bounds: tuple[float, ...]) -> Window:
    """What /metrics counts for a regressor that answered these values, one per request."""
    n = float(len(values))
    return Window(
        Snapshot(
            requests_by_status={"200": n},
            latency_buckets={0.01: n, INF: n},
            value_buckets={bound: float((values <= bound).sum()) for bound in bounds},
        )
    )


def live(
    stable: np.ndarray,
    canary: np.ndarray,
    sizes: tuple[int, int],
    seed: int,
    canary_bounds: tuple[float, ...],
) -> tuple[Window, Window]:
    """One window of traffic replaying the held-out rows, split between the two versions."""
    rng = np.random.default_rng(seed)
    rows = len(stable)
    return (
        window(stable[rng.integers(0, rows, sizes[0])], own_bounds(stable)),
        window(canary[rng.integers(0, rows, sizes[1])], canary_bounds),
    )


def shifted(values: np.ndarray) -> np.ndarray:
    """The same ranking of rows, every prediction one standard deviation higher."""
    return values + values.std()


# ------------------------------------------------------------------- histograms on other buckets


def test_regrid_onto_the_same_bounds_changes_nothing() -> None:
    counts = {1.0: 3.0, 2.0: 5.0, 4.0: 2.0, INF: 1.0}
    assert regrid(counts, sorted(counts)) == counts


def test_regrid_spreads_a_bucket_evenly_and_keeps_every_observation() -> None:
    counts = {10.0: 4.0, 20.0: 10.0, INF: 6.0}  # 10 between 10 and 20
    assert regrid(counts, [10.0, 15.0, 30.0, INF]) == {10.0: 4.0, 15.0: 5.0, 30.0: 11.0, INF: 0.0}
    # The open-ended first and last buckets are taken as wide as their finite neighbour.
    assert regrid(counts, [5.0, INF]) == {5.0: 2.0, INF: 18.0}
    assert regrid(counts, [25.0, INF]) == {25.0: 17.0, INF: 3.0}
    assert regrid({INF: 5.0}, [1.0, INF]) == {1.0: 0.0, INF: 5.0}


def test_value_divergence_of_the_same_values_in_other_buckets_is_small() -> None:
    values = np.random.default_rng(1).normal(150, 50, 2000)
    first, second = own_bounds(values), own_bounds(values[:1000])
    divergence = value_divergence(
        window(values, first).value_counts, window(values, second).value_counts
    )
    assert divergence is not None and divergence < 0.01
    moved = value_divergence(
        window(values, first).value_counts, window(values + 50, first).value_counts
    )
    assert moved is not None and moved > 0.1


def test_the_value_histogram_is_read_from_metrics() -> None:
    text = (
        'pr2prod_predicted_value_bucket{le="100.0",model_version="a"} 3.0\n'
        'pr2prod_predicted_value_bucket{le="200.0",model_version="a"} 7.0\n'
        'pr2prod_predicted_value_bucket{le="+Inf",model_version="a"} 9.0\n'
    )
    read = Window(parse_metrics(text))
    assert read.value_counts == {100.0: 3.0, 200.0: 4.0, INF: 2.0}
    assert read.predictions == 9.0


# ------------------------------------------------------------------------------- the rule


WINDOW_SIZES = [(100, 100), (150, 50), (450, 50), (50, 50)]


@pytest.mark.parametrize("sizes", WINDOW_SIZES)
def test_calibrated_honest_retrainings_pass(retrained, sizes: tuple[int, int]) -> None:
    """Small windows included: 50 predictions a side are no alarm."""
    stable, canaries = retrained
    references = [ValueReference(stable, canary) for canary in canaries]
    assert not any(r.offline().beyond(DEFAULTS.prediction_divergence_max) for r in references)
    outcomes = {
        analyse(
            *live(stable, reference.canary, sizes, seed, own_bounds(reference.canary)),
            DEFAULTS,
            MIN_REQUESTS,
            reference=reference,
        ).outcome
        for reference in references
        for seed in range(50)
    }
    assert outcomes == {"pass"}


def test_windows_under_the_minimum_are_inconclusive_not_failed(retrained) -> None:
    stable, (canary, *_) = retrained
    reference = ValueReference(stable, shifted(canary))  # even a bad canary
    windows = live(stable, shifted(canary), (30, 10), 0, own_bounds(shifted(canary)))
    assert analyse(*windows, DEFAULTS, MIN_REQUESTS, reference=reference).outcome == "inconclusive"


@pytest.mark.parametrize("fault", ["constant", "shifted by one standard deviation"])
def test_a_broken_regressor_already_diverges_on_the_held_out_rows(retrained, fault: str) -> None:
    stable, (canary, *_) = retrained
    broken = np.full_like(canary, canary.mean()) if fault == "constant" else shifted(canary)
    found = ValueReference(stable, broken).offline().beyond(DEFAULTS.prediction_divergence_max)
    assert found and "predicted-value divergence" in found[0]


@pytest.mark.parametrize("sizes", [(100, 100), (150, 50), (450, 50)])
def test_a_regressor_that_shifts_only_under_traffic_fails(
    retrained, sizes: tuple[int, int]
) -> None:
    """It answered the held-out rows as the retrained model does (its buckets are those of
    its evaluation), then every answer moves up by a standard deviation."""
    stable, (canary, *_) = retrained
    reference = ValueReference(stable, canary)
    outcomes = [
        analyse(
            *live(stable, shifted(canary), sizes, seed, own_bounds(canary)),
            DEFAULTS,
            MIN_REQUESTS,
            reference=reference,
        )
        for seed in range(50)
    ]
    failing = [result for result in outcomes if result.outcome == "fail"]
    assert len(failing) >= 0.85 * len(outcomes)
    reason = failing[0].reasons[0]
    assert reason.startswith("predicted-value divergence") and "held-out rows before" in reason


@pytest.mark.parametrize("sizes", [(100, 100), (450, 50)])
def test_a_constant_regressor_fails_every_window(retrained, sizes: tuple[int, int]) -> None:
    stable, (canary, *_) = retrained
    constant = np.full_like(canary, canary.mean())
    reference = ValueReference(stable, canary)
    for seed in range(20):
        windows = live(stable, constant, sizes, seed, own_bounds(canary))
        assert analyse(*windows, DEFAULTS, MIN_REQUESTS, reference=reference).outcome == "fail"


def test_the_limit_grows_with_fewer_requests_and_is_the_same_on_every_run(retrained) -> None:
    stable, (canary, *_) = retrained
    reference = ValueReference(stable, canary)
    many, few = reference.live_limits(400, 400), reference.live_limits(50, 50)
    assert many.values is not None and few.values is not None
    assert few.values > many.values >= calibration.LIMIT_FLOOR
    assert ValueReference(stable, canary).live_limits(50, 50) == few


def test_without_a_reference_the_fixed_limit_holds_values_too(retrained) -> None:
    stable, (canary, *_) = retrained
    windows = live(stable, shifted(canary), (200, 200), 0, own_bounds(canary))
    result = analyse(*windows, DEFAULTS, MIN_REQUESTS)
    assert result.outcome == "fail"
    assert result.reasons[0].startswith(
        f"predicted-value divergence {result.figures['value_divergence']:.3f} > 0.1"
    )


def test_a_passing_regressor_window_names_its_value_divergence(retrained, tmp_path: Path) -> None:
    stable, (canary, *_) = retrained
    reference = ValueReference(stable, canary)
    windows = live(stable, canary, (100, 100), 0, own_bounds(canary))
    result = analyse(*windows, DEFAULTS, MIN_REQUESTS, reference=reference)
    assert result.outcome == "pass" and "divergence values 0." in result.reasons[0]
    window = WindowRecord.judged(1, 10, result)
    table = windows_table([window])
    assert "value JS" in table and "probability JS" not in table
    # The deployment history's table shows it as the decision's prediction divergence.
    history = History(tmp_path / "history.jsonl")
    history.append(Decision("v2", "promoted", "every step passed", "v1", windows=(window,)))
    value = f"{result.figures['value_divergence']:.3f}"
    assert "prediction JS" in history.table() and f" {value} " in history.table()
