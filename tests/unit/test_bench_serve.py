"""The arithmetic of `python -m bench.serve`: percentiles, throughput, shares, the verdict."""

from __future__ import annotations

import math

import numpy as np
import pytest

from bench.serve import (
    COMPILED_IN_PROCESS,
    COMPILED_SERVED,
    ECHO_SERVED,
    SKLEARN_SERVED,
    Measurement,
    Row,
    Targets,
    describe_input_counting,
    percentile,
    request_batches,
    summarise,
    verdict,
    with_echo_shares,
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
        model_seconds=0.003,
        timed_model_calls=2,
    )

    row = summarise(COMPILED_SERVED, records=32, concurrency=16, measurement=measurement)

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
    assert row.model_ms_per_call == pytest.approx(1.5)


def test_summary_of_a_run_with_no_successes() -> None:
    row = summarise(COMPILED_SERVED, 1, 16, Measurement([], {"RemoteProtocolError": 3}, 1.0))

    assert row.requests == 0
    assert row.requests_per_s == 0
    assert math.isnan(row.p99_ms)
    assert math.isnan(row.cpu_ms_per_request)
    assert row.requests_per_model_call is None
    assert row.model_ms_per_call is None


def row(
    mode: str,
    records: int,
    concurrency: int,
    per_s: float,
    p99_ms: float = 50.0,
    errors: dict[str, int] | None = None,
    model_ms: float = 0.1,
) -> Row:
    """A one-second run of `per_s` requests that all took `p99_ms`, `model_ms` per call."""
    count = int(per_s)
    measurement = Measurement(
        [p99_ms / 1000] * count,
        errors or {},
        elapsed_s=1.0,
        model_seconds=count * model_ms / 1000,
        timed_model_calls=count,
    )
    return summarise(mode, records, concurrency, measurement)


def test_shares_divide_by_the_echo_service_under_the_same_load() -> None:
    rows = [
        row(COMPILED_IN_PROCESS, 1, 1, 5000),
        row(ECHO_SERVED, 1, 1, 400),
        row(ECHO_SERVED, 1, 16, 500),
        row(COMPILED_SERVED, 1, 1, 300),
        row(COMPILED_SERVED, 1, 16, 450),
        row(SKLEARN_SERVED, 1, 16, 100),
        row(COMPILED_SERVED, 32, 16, 30),  # no echo figure for it
    ]

    shares = [r.share_of_echo for r in with_echo_shares(rows)]

    assert shares == [None, None, None, pytest.approx(0.75), pytest.approx(0.9), 0.2, None]


def compiled_service(alone_p99: float = 5, busy_p99: float = 60, busy_per_s: float = 450):
    return with_echo_shares(
        [
            row(ECHO_SERVED, 1, 16, 500),
            row(COMPILED_SERVED, 1, 1, 200, p99_ms=alone_p99),
            row(COMPILED_SERVED, 1, 16, busy_per_s, p99_ms=busy_p99),
        ]
    )


def test_verdict_met() -> None:
    result = verdict(compiled_service(), Targets())

    assert result["met"]
    assert [target["met"] for target in result["targets"]] == [True] * 5
    assert result["targets"][4]["value"] == pytest.approx(0.9)


def test_verdict_names_every_target_missed() -> None:
    rows = compiled_service(alone_p99=10, busy_p99=100, busy_per_s=362)

    result = verdict(rows, Targets())

    assert not result["met"]
    missed = [target["target"] for target in result["targets"] if not target["met"]]
    assert missed == [
        "p99 ms, single records, concurrency 1 < 10",
        "p99 ms, single records, concurrency 16 < 100",
        "requests/s, single records, concurrency 16 >= 363",
        "share of the echo service's requests/s, concurrency 16 >= 0.8",
    ]


def test_errors_miss_a_target_whatever_the_figure() -> None:
    rows = [row(COMPILED_SERVED, 1, 16, 450, errors={"503": 1}), row(ECHO_SERVED, 1, 16, 500)]

    result = verdict(with_echo_shares(rows), Targets())

    assert not any(target["met"] for target in result["targets"])
    assert result["targets"][0]["errors"] == 1


def test_verdict_without_the_compiled_services_rows() -> None:
    result = verdict([row(ECHO_SERVED, 1, 16, 500)], Targets())

    assert not result["met"]
    assert all(target["value"] is None for target in result["targets"])


def test_request_batches_cycle_through_the_rows() -> None:
    rows = [{"x": i} for i in range(5)]

    batches = request_batches(rows, 3)

    assert len(batches) == 5
    assert all(len(batch) == 3 for batch in batches)
    assert [r["x"] for batch in batches for r in batch] == [i % 5 for i in range(15)]
    assert request_batches(rows, 1) == [[r] for r in rows]


def test_input_counting_is_set_against_the_compiled_services_fastest_median() -> None:
    rows = [
        summarise(COMPILED_SERVED, 1, 1, Measurement([0.004] * 10, {}, elapsed_s=1.0)),
        summarise(COMPILED_SERVED, 1, 16, Measurement([0.040] * 10, {}, elapsed_s=1.0)),
        summarise(SKLEARN_SERVED, 1, 1, Measurement([0.002] * 10, {}, elapsed_s=1.0)),
    ]
    costs = [{"records": 1, "p50_us": 80.0, "p99_us": 150.0}]

    (line,) = describe_input_counting(costs, rows)

    assert "p50 80 us, p99 150 us, 2.0% of its served median" in line
