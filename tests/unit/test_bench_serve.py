"""The arithmetic of `python -m bench.serve`: percentiles, throughput, ratios, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.serve import (
    IN_PROCESS,
    SERVED,
    Measurement,
    Row,
    ServingGoal,
    describe_input_counting,
    percentile,
    request_batches,
    summarise,
    verdict,
    with_ratios,
)


@pytest.mark.parametrize("q", [0, 1, 25, 50, 90, 99, 99.9, 100])
@pytest.mark.parametrize("size", [1, 2, 7, 100, 1001])
def test_percentile_matches_numpy(q: float, size: int) -> None:
    values = list(np.random.default_rng(size).exponential(0.02, size))

    assert percentile(values, q) == pytest.approx(np.percentile(values, q))


def test_percentile_of_nothing_is_nan() -> None:
    assert math.isnan(percentile([], 50))


def test_summary_arithmetic() -> None:
    measurement = Measurement(
        latencies_s=[0.010, 0.020, 0.030, 0.040],
        errors={"503": 1},
        elapsed_s=2.0,
        client_cpu_s=0.2,
        server_cpu_s=1.0,
        model_calls=2,
        batched_requests=5,  # the failed request was batched too
    )

    row = summarise(SERVED, records=32, concurrency=16, measurement=measurement)

    assert row.requests == 4  # successful only
    assert row.errors == {"503": 1}
    assert row.requests_per_s == pytest.approx(2.0)
    assert row.records_per_s == pytest.approx(64.0)
    assert row.p50_ms == pytest.approx(25.0)
    assert row.p99_ms == pytest.approx(39.7)
    assert row.client_cores == pytest.approx(0.1)
    assert row.server_cores == pytest.approx(0.5)
    assert row.cpu_ms_per_request == pytest.approx(300.0)
    assert row.requests_per_model_call == pytest.approx(2.5)


def test_summary_of_a_run_with_no_successes() -> None:
    row = summarise(SERVED, 1, 16, Measurement([], {"RemoteProtocolError": 3}, 1.0))

    assert row.requests == 0
    assert row.requests_per_s == 0
    assert math.isnan(row.p99_ms)
    assert math.isnan(row.cpu_ms_per_request)
    assert row.requests_per_model_call is None


def row(
    mode: str,
    records: int,
    concurrency: int,
    per_s: float,
    p99_ms: float = 50.0,
    errors: dict[str, int] | None = None,
) -> Row:
    """A one-second run of `per_s` requests that all took `p99_ms`."""
    measurement = Measurement([p99_ms / 1000] * int(per_s), errors or {}, elapsed_s=1.0)
    return summarise(mode, records, concurrency, measurement)


def test_ratios_divide_by_in_process_of_the_same_request_size() -> None:
    rows = [
        row(IN_PROCESS, 1, 1, 50),
        row(IN_PROCESS, 32, 1, 40),
        row(SERVED, 1, 1, 35),
        row(SERVED, 1, 16, 200),
        row(SERVED, 32, 16, 30),
    ]

    ratios = [r.ratio for r in with_ratios(rows)]

    assert ratios == [None, None, pytest.approx(0.7), pytest.approx(4.0), pytest.approx(0.75)]


def test_no_ratio_without_an_in_process_figure() -> None:
    assert with_ratios([row(SERVED, 1, 16, 200)])[0].ratio is None


def test_verdict_met() -> None:
    rows = with_ratios([row(IN_PROCESS, 1, 1, 100), row(SERVED, 1, 16, 60, p99_ms=99)])

    result = verdict(rows, ServingGoal())

    assert result["met"]
    assert result["misses"] == []
    assert result["ratio"] == pytest.approx(0.6)


def test_verdict_lists_every_miss() -> None:
    rows = with_ratios(
        [row(IN_PROCESS, 1, 1, 100), row(SERVED, 1, 16, 50, p99_ms=100, errors={"503": 2})]
    )

    result = verdict(rows, ServingGoal())

    assert not result["met"]
    assert len(result["misses"]) == 3
    assert result["errors"] == 2


def test_verdict_without_the_goals_row() -> None:
    assert not verdict([row(IN_PROCESS, 1, 1, 100)], ServingGoal())["met"]


def test_request_batches_cycle_through_the_rows() -> None:
    rows = [{"x": i} for i in range(5)]

    batches = request_batches(rows, 3)

    assert len(batches) == 5
    assert all(len(batch) == 3 for batch in batches)
    assert [r["x"] for batch in batches for r in batch] == [i % 5 for i in range(15)]
    assert request_batches(rows, 1) == [[r] for r in rows]


def test_input_counting_is_set_against_the_fastest_served_median_of_its_size() -> None:
    rows = [row(SERVED, 1, 1, 100, p99_ms=4.0), row(SERVED, 1, 16, 100, p99_ms=40.0)]
    costs = [{"records": 1, "p50_us": 80.0, "p99_us": 150.0}]

    (line,) = describe_input_counting(costs, rows)

    assert "p50 80 us, p99 150 us, 2.0% of the served median" in line
