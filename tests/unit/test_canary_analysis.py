"""Canary figures (parsing /metrics, windows, p99) and the canary judgement.

The simulations draw requests for two versions from one test set: an identical canary
differs from stable only by sampling noise and must never fail, while a canary that
predicts one class, shifts its probabilities, errs or slows down must.
"""

from __future__ import annotations

import json
import math
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
import pytest
from conftest import free_port
from scipy.spatial.distance import jensenshannon
from sklearn.datasets import load_breast_cancer
from sklearn.ensemble import RandomForestClassifier
from sklearn.model_selection import train_test_split

from pr2prod.deploy import analysis
from pr2prod.deploy.analysis import analyse
from pr2prod.deploy.divergence import js_divergence, merge_sparse_buckets
from pr2prod.deploy.observations import (
    MetricsUnavailable,
    ObservationError,
    PrometheusSource,
    Snapshot,
    VersionUnreachable,
    Window,
    histogram_quantile,
    parse_metrics,
    parse_samples,
    scrape,
)
from pr2prod.serving.telemetry import LATENCY_BUCKETS, PROBABILITY_BUCKETS
from pr2prod.settings import Thresholds

INF = math.inf
DEFAULTS = Thresholds()
MIN_REQUESTS = 50

# GET /metrics of the served bento after 3 good and 1 invalid POST /predict (2 records
# each), trimmed: the /readyz histogram and BentoML's batch-size histogram are cut short.
# One line is added: predictions of another model_version, which must be summed in.
METRICS_TEXT = """\
# HELP bentoml_service_request_total Total number of runner RPC
# TYPE bentoml_service_request_total counter
bentoml_service_request_total{endpoint="/predict",http_response_code="200",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_total{endpoint="/predict",http_response_code="500",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.0
bentoml_service_request_total{endpoint="/readyz",http_response_code="200",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_total{endpoint="/predict",http_response_code="400",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
# HELP pr2prod_predictions_total Predictions served, by predicted class
# TYPE pr2prod_predictions_total counter
pr2prod_predictions_total{model_version="6f43397354688f9a",predicted_class="benign"} 3.0
pr2prod_predictions_total{model_version="6f43397354688f9a",predicted_class="malignant"} 3.0
pr2prod_predictions_total{model_version="0123456789abcdef",predicted_class="benign"} 2.0
# HELP bentoml_service_request_in_progress Total number of runner RPC in progress now
# TYPE bentoml_service_request_in_progress gauge
bentoml_service_request_in_progress{endpoint="/readyz",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.0
bentoml_service_request_in_progress{endpoint="/predict",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.0
# HELP bentoml_service_request_duration_seconds runner RPC duration in seconds
# TYPE bentoml_service_request_duration_seconds histogram
bentoml_service_request_duration_seconds_sum{endpoint="/readyz",http_response_code="200",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.01222450100021888
bentoml_service_request_duration_seconds_bucket{endpoint="/readyz",http_response_code="200",le="0.005",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.0
bentoml_service_request_duration_seconds_bucket{endpoint="/readyz",http_response_code="200",le="+Inf",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_sum{endpoint="/predict",http_response_code="200",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.07498709500032419
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.005",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.01",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.025",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.05",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.1",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.25",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="0.5",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="1.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="2.5",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="5.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="10.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="30.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="60.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="120.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="180.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="200",le="+Inf",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_count{endpoint="/predict",http_response_code="200",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 3.0
bentoml_service_request_duration_seconds_sum{endpoint="/predict",http_response_code="400",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 0.001707991999865044
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.005",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.01",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.025",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.05",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.1",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.25",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="0.5",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="1.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="2.5",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="5.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="10.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="30.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="60.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="120.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="180.0",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_bucket{endpoint="/predict",http_response_code="400",le="+Inf",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
bentoml_service_request_duration_seconds_count{endpoint="/predict",http_response_code="400",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.0
# HELP pr2prod_predicted_probability Predicted probability of each class
# TYPE pr2prod_predicted_probability histogram
pr2prod_predicted_probability_sum{class_name="malignant",model_version="6f43397354688f9a"} 3.0354087821445903
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.1",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.2",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.3",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.4",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.5",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.6",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.7",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.8",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="0.9",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="1.0",model_version="6f43397354688f9a"} 6.0
pr2prod_predicted_probability_bucket{class_name="malignant",le="+Inf",model_version="6f43397354688f9a"} 6.0
pr2prod_predicted_probability_count{class_name="malignant",model_version="6f43397354688f9a"} 6.0
pr2prod_predicted_probability_sum{class_name="benign",model_version="6f43397354688f9a"} 2.96459121785541
pr2prod_predicted_probability_bucket{class_name="benign",le="0.1",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.2",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.3",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.4",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.5",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.6",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.7",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.8",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="0.9",model_version="6f43397354688f9a"} 3.0
pr2prod_predicted_probability_bucket{class_name="benign",le="1.0",model_version="6f43397354688f9a"} 6.0
pr2prod_predicted_probability_bucket{class_name="benign",le="+Inf",model_version="6f43397354688f9a"} 6.0
pr2prod_predicted_probability_count{class_name="benign",model_version="6f43397354688f9a"} 6.0
# HELP bentoml_service_last_request_timestamp_seconds Timestamp of the last received request
# TYPE bentoml_service_last_request_timestamp_seconds gauge
bentoml_service_last_request_timestamp_seconds{pid="27931",runner_name="pr2prod",service_name="pr2prod",service_version="dc477381d1dd16b7"} 1.7956909768143454e+09
"""  # noqa: E501

PREDICT_LATENCY = {0.005: 1.0, 0.01: 1.0, 0.025: 2.0, 0.05: 4.0, 0.1: 4.0, 0.25: 4.0}
PREDICT_LATENCY |= {0.5: 4.0, 1.0: 4.0, 2.5: 4.0, 5.0: 4.0, 10.0: 4.0, 30.0: 4.0}
PREDICT_LATENCY |= {60.0: 4.0, 120.0: 4.0, 180.0: 4.0, INF: 4.0}
HALF_CERTAIN = {bound: 3.0 for bound in PROBABILITY_BUCKETS[:-1]} | {1.0: 6.0, INF: 6.0}


# ---------------------------------------------------------------- reading /metrics


def test_parse_metrics_keeps_predict_only_and_sums_over_other_labels() -> None:
    snapshot = parse_metrics(METRICS_TEXT)

    assert snapshot.requests_by_status == {"200": 3.0, "500": 0.0, "400": 1.0}  # no /readyz
    assert snapshot.latency_buckets == PREDICT_LATENCY  # 200s and 400s together
    assert snapshot.predicted == {"benign": 5.0, "malignant": 3.0}  # both model versions
    assert snapshot.probability_buckets == {"malignant": HALF_CERTAIN, "benign": HALF_CERTAIN}


def test_parse_metrics_rejects_what_is_not_prometheus_text() -> None:
    with pytest.raises(ObservationError, match="not Prometheus text"):
        parse_metrics("<html>Bad gateway</html>")


def test_parse_samples_reads_every_series_by_its_whole_name() -> None:
    samples = parse_samples(METRICS_TEXT)

    def values(name: str, **labels: str) -> list[float]:
        return [
            value
            for sample_name, sample_labels, value in samples
            if sample_name == name and labels.items() <= sample_labels.items()
        ]

    assert values("bentoml_service_request_total", endpoint="/readyz") == [1.0]
    assert values("bentoml_service_request_duration_seconds_count") == [3.0, 1.0]
    assert values("bentoml_service_request_duration_seconds") == []  # no sample of that name
    assert values("bentoml_service_last_request_timestamp_seconds") == [1.7956909768143454e9]


@contextmanager
def http_server(
    answer: Callable[[str], tuple[int, str]],
) -> Iterator[str]:
    """A throw-away HTTP server on a free port: `answer(path)` gives status and body."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answer(self.path)
            payload = body.encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, *_: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_scrape_reads_the_versions_own_metrics() -> None:
    with http_server(lambda path: (200, METRICS_TEXT) if path == "/metrics" else (404, "")) as url:
        assert scrape(url + "/") == parse_metrics(METRICS_TEXT)


def test_scrape_of_a_version_that_does_not_answer_raises_version_unreachable() -> None:
    with pytest.raises(VersionUnreachable, match="did not answer"):
        scrape(f"http://127.0.0.1:{free_port()}", timeout=1)
    with (
        http_server(lambda _: (503, "starting")) as url,
        pytest.raises(VersionUnreachable, match="answered 503"),
    ):
        scrape(url)


def prometheus_answer(result: list[dict]) -> Callable[[str], tuple[int, str]]:
    body = {"status": "success", "data": {"resultType": "vector", "result": result}}
    return lambda _: (200, json.dumps(body))


def test_prometheus_source_folds_the_query_result_into_a_snapshot() -> None:
    series = [
        ("up", {}, "1"),
        (
            "bentoml_service_request_total",
            {"endpoint": "/predict", "http_response_code": "200"},
            "7",
        ),
        ("bentoml_service_request_total", {"endpoint": "/livez", "http_response_code": "200"}, "9"),
        ("pr2prod_predictions_total", {"predicted_class": "benign", "job": "a"}, "4"),
        ("pr2prod_predictions_total", {"predicted_class": "benign", "job": "b"}, "3"),
    ]
    result = [
        {"metric": {"__name__": name, **labels}, "value": [1.0, value]}
        for name, labels, value in series
    ]
    with http_server(prometheus_answer(result)) as url:
        snapshot = PrometheusSource(url, {"v1": 'release="v1"'}).snapshot("v1")

    assert snapshot == Snapshot(requests_by_status={"200": 7.0}, predicted={"benign": 7.0})


def test_prometheus_source_tells_a_down_version_from_a_down_prometheus() -> None:
    down = [{"metric": {"__name__": "up", "instance": "x"}, "value": [1.0, "0"]}]
    with (
        http_server(prometheus_answer(down)) as url,
        pytest.raises(VersionUnreachable, match="up == 0"),
    ):
        PrometheusSource(url, lambda v: f'release="{v}"').snapshot("v1")
    with http_server(prometheus_answer([])) as url:
        with pytest.raises(VersionUnreachable, match="no target"):
            PrometheusSource(url, lambda v: f'release="{v}"').snapshot("v1")
        with pytest.raises(ObservationError, match="no Prometheus selector"):
            PrometheusSource(url, {}).snapshot("v1")
    with pytest.raises(MetricsUnavailable):
        PrometheusSource(f"http://127.0.0.1:{free_port()}", lambda v: "").snapshot("v1")


# ---------------------------------------------------------------- windows


def test_window_is_after_minus_before() -> None:
    before = Snapshot({"200": 10.0}, {0.01: 8.0, INF: 10.0}, {"a": 10.0}, {"a": {1.0: 10.0}})
    after = Snapshot(
        {"200": 16.0, "503": 4.0}, {0.01: 10.0, INF: 20.0}, {"a": 12.0, "b": 4.0},
        {"a": {1.0: 12.0}, "b": {1.0: 4.0}},
    )  # fmt: skip

    window = Window.between(before, after)

    assert window.counts == Snapshot(
        {"200": 6.0, "503": 4.0}, {0.01: 2.0, INF: 10.0}, {"a": 2.0, "b": 4.0},
        {"a": {1.0: 2.0}, "b": {1.0: 4.0}},
    )  # fmt: skip
    assert (window.requests, window.errors, window.error_rate) == (10.0, 4.0, 0.4)
    assert window.class_shares == {"a": pytest.approx(1 / 3), "b": pytest.approx(2 / 3)}


def test_a_counter_going_down_means_a_restart_and_the_window_is_after_alone() -> None:
    before = parse_metrics(METRICS_TEXT)
    after = Snapshot({"200": 2.0}, {0.01: 2.0, INF: 2.0}, {"benign": 2.0}, {})

    assert Window.between(before, after).counts == after


def test_a_vanished_series_also_means_a_restart() -> None:
    before = Snapshot({"200": 5.0, "500": 1.0})
    after = Snapshot({"200": 9.0})  # the 500 series is gone: a fresh process

    assert Window.between(before, after).counts == after


def test_an_unchanged_version_gives_an_empty_window() -> None:
    snapshot = parse_metrics(METRICS_TEXT)
    window = Window.between(snapshot, snapshot)

    assert (window.requests, window.error_rate) == (0.0, None)
    assert histogram_quantile(0.99, window.counts.latency_buckets) is None
    assert window.class_shares == {}


def test_probability_counts_are_per_bucket_not_cumulative() -> None:
    window = Window(parse_metrics(METRICS_TEXT))

    counts = window.probability_counts["malignant"]

    assert counts[0.1] == 3.0 and counts[1.0] == 3.0
    assert sum(counts.values()) == 6.0 and counts[INF] == 0.0


@pytest.mark.parametrize(
    ("buckets", "expected_ms"),
    [
        # rank 99 of 100 falls 9/10 into (25 ms, 50 ms]
        ({0.005: 0, 0.01: 50, 0.025: 90, 0.05: 100, INF: 100}, 47.5),
        # in the first bucket, which starts at 0
        ({0.01: 100, INF: 100}, 9.9),
        # in +Inf: the largest finite bound is all that is known
        ({0.005: 10, 0.1: 98, INF: 100}, 100.0),
        # 4 requests: rank 3.96 lies 0.98 into the 2 requests of (25 ms, 50 ms]
        (PREDICT_LATENCY, 49.5),
    ],
)
def test_p99_interpolates_linearly_within_the_bucket(
    buckets: dict[float, float], expected_ms: float
) -> None:
    assert histogram_quantile(0.99, buckets) * 1000 == pytest.approx(expected_ms)


def test_quantile_of_nothing_is_none() -> None:
    assert histogram_quantile(0.99, {}) is None
    assert histogram_quantile(0.99, {0.1: 0.0, INF: 0.0}) is None
    assert histogram_quantile(0.99, {0.1: 3.0}) is None  # no +Inf: total unknown


# ---------------------------------------------------------------- divergence


@pytest.mark.parametrize(
    ("first", "second"),
    [([1, 0], [0, 1]), ([0.5, 0.5], [1, 0]), ([0.3, 0.7], [0.35, 0.65]), ([5, 3, 2], [1, 1, 8])],
)
def test_js_divergence_is_scipys_squared_distance_base_2(
    first: list[float], second: list[float]
) -> None:
    expected = jensenshannon(first, second, base=2) ** 2
    got = js_divergence(dict(enumerate(first)), dict(enumerate(second)))
    assert got == pytest.approx(expected, abs=1e-12)


def test_js_divergence_when_a_side_is_empty() -> None:
    assert js_divergence({}, {}) is None
    assert js_divergence({"a": 3.0}, {}) == 1.0


def test_sparse_probability_buckets_are_merged_with_their_neighbours() -> None:
    stable = {0.1: 30.0, 0.2: 2.0, 0.3: 1.0, 0.9: 3.0, 1.0: 14.0, INF: 0.0}
    canary = {0.1: 28.0, 0.2: 1.0, 0.3: 4.0, 0.9: 2.0, 1.0: 15.0, INF: 0.0}

    merged = merge_sparse_buckets(stable, canary)  # 50 a side: 20 together per bucket

    assert merged == ({0.1: 30.0, 1.0: 20.0}, {0.1: 28.0, 1.0: 22.0})


# ---------------------------------------------------------------- the rules, at their boundaries


def version(
    requests: int = 200,
    errors: int = 0,
    latency: dict[float, float] | None = None,
    predicted: dict[str, float] | None = None,
    probabilities: dict[str, dict[float, float]] | None = None,
    model: dict[float, float] | None = None,
) -> Window:
    """A window with hand-made figures; by default 200 fine, fast requests, balanced classes,
    and no model calls recorded."""
    latency = latency or {0.005: 0.0, 0.01: requests, INF: requests}
    predicted = predicted if predicted is not None else {"a": requests / 2, "b": requests / 2}
    statuses = {"200": float(requests - errors), "500": float(errors)}
    return Window(Snapshot(statuses, latency, predicted, probabilities or {}, model or {}))


def model_calls_at(ms: float, calls: int = 100) -> dict[float, float]:
    """Model-time buckets whose median is exactly `ms`."""
    return {ms / 2000: 0.0, ms / 1000: calls / 2, 2 * ms / 1000: calls, INF: calls}


def p99_at(ms: float, requests: int = 500) -> dict[float, float]:
    """Latency buckets whose p99 is exactly `ms` (99% of requests at or under it) and whose
    median is 0.5 ms whatever `ms` is, so that only the tail differs (500 requests: enough
    for the plain p99, see analysis.judged_p99_ms)."""
    return {
        0.0004: 0.0,
        0.0005: requests * 0.5,
        ms / 1000: requests * 0.99,
        2 * ms / 1000: requests,
        INF: requests,
    }


def verdict(
    stable: Window, canary: Window, breached_before: bool = False, **thresholds: float
) -> analysis.Analysis:
    return analyse(stable, canary, replace(DEFAULTS, **thresholds), MIN_REQUESTS, breached_before)


def test_a_canary_like_stable_passes_with_figures_for_the_history() -> None:
    result = verdict(version(), version())

    assert result.outcome == "pass"
    assert result.reasons[0].startswith("canary within thresholds over 200 requests")
    assert result.figures == {
        "stable_requests": 200.0,
        "canary_requests": 200.0,
        "stable_errors": 0.0,
        "canary_errors": 0.0,
        "stable_error_rate": 0.0,
        "canary_error_rate": 0.0,
        # 200 requests: the sixth slowest (rank n - 5) stands for the p99.
        "stable_p99_ms": pytest.approx(9.875),
        "canary_p99_ms": pytest.approx(9.875),
        "stable_p50_ms": pytest.approx(7.5),
        "canary_p50_ms": pytest.approx(7.5),
        "stable_model_p50_ms": None,
        "canary_model_p50_ms": None,
        "class_divergence": 0.0,
        "probability_divergence": None,
        "class_divergence_limit": DEFAULTS.prediction_divergence_max,
        "probability_divergence_limit": DEFAULTS.prediction_divergence_max,
    }


@pytest.mark.parametrize(("errors", "outcome"), [(50, "pass"), (51, "fail")])
def test_error_cap_boundary(errors: int, outcome: str) -> None:
    # stable errs as much, so only the cap (5% of 1000) can fail the canary
    result = verdict(version(1000, errors), version(1000, errors))

    assert result.outcome == outcome
    if outcome == "fail":
        assert result.reasons == ["canary 5xx rate 5.1% > cap 5.0% (51 of 1000 requests)"]


@pytest.mark.parametrize(("errors", "outcome"), [(20, "pass"), (21, "fail")])
def test_error_margin_boundary(monkeypatch: pytest.MonkeyPatch, errors: int, outcome: str) -> None:
    monkeypatch.setattr(analysis, "ERROR_NOISE_Z", 0.0)  # the margin alone
    result = verdict(version(1000, 10), version(1000, errors))  # stable 1%, margin 1%

    assert result.outcome == outcome


def test_the_error_margin_allows_for_sampling_noise() -> None:
    # 2 errors in 100 is "2% > 0% + 1%", but well within what chance does
    assert verdict(version(100), version(100, 2)).outcome == "pass"


def test_a_canary_erring_more_fails_on_the_margin_even_under_the_cap() -> None:
    result = verdict(version(2000, 20), version(2000, 90))  # 1% vs 4.5%

    assert result.outcome == "fail"
    assert result.reasons[0].startswith("canary 5xx rate 4.5% > stable 1.0% + 1.0% (+ ")


def test_a_canary_answering_one_request_in_five_with_5xx_fails() -> None:
    result = verdict(version(200), version(200, 40))

    assert result.outcome == "fail"
    assert "canary 5xx rate 20.0% > cap 5.0% (40 of 200 requests)" in result.reasons
    assert any(r.startswith("canary 5xx rate 20.0% > stable 0.0% + 1.0%") for r in result.reasons)


@pytest.mark.parametrize(("canary_ms", "outcome"), [(20.0, "pass"), (20.2, "suspect")])
def test_latency_ratio_boundary(canary_ms: float, outcome: str) -> None:
    result = verdict(version(latency=p99_at(10.0)), version(latency=p99_at(canary_ms)))

    assert result.outcome == outcome
    if outcome == "suspect":
        assert result.reasons == [
            "canary p99 latency 20.2 ms > 2 x stable p99 10.0 ms: the window runs again to confirm"
        ]


def test_a_tail_breach_fails_when_the_window_before_was_suspect_too() -> None:
    stable, canary = version(latency=p99_at(10.0)), version(latency=p99_at(30.0))

    result = verdict(stable, canary, breached_before=True)

    assert result.outcome == "fail"
    assert result.reasons == [
        "canary p99 latency 30.0 ms > 2 x stable p99 10.0 ms (second window in a row)"
    ]
    assert verdict(version(), version(), breached_before=True).outcome == "pass"


def test_a_tail_breach_with_another_failure_fails_at_once_naming_both() -> None:
    stable, canary = version(latency=p99_at(10.0)), version(200, 40, latency=p99_at(30.0))

    result = verdict(stable, canary)

    assert result.outcome == "fail"
    assert "canary p99 latency 30.0 ms > 2 x stable p99 10.0 ms" in result.reasons
    assert "canary 5xx rate 20.0% > cap 5.0% (40 of 200 requests)" in result.reasons


def test_too_few_requests_leave_the_tail_unjudged() -> None:
    stable, canary = version(latency=p99_at(10.0)), version(20, latency=p99_at(30.0, 20))

    assert verdict(stable, canary, breached_before=True).outcome == "inconclusive"


@pytest.mark.parametrize(("canary_ms", "outcome"), [(10.0, "pass"), (10.2, "fail")])
def test_latency_ratio_uses_a_floor_under_a_tiny_stable_p99(canary_ms: float, outcome: str) -> None:
    result = verdict(
        version(latency=p99_at(1.0)), version(latency=p99_at(canary_ms)), breached_before=True
    )

    assert result.outcome == outcome
    if outcome == "fail":
        assert result.reasons == [
            "canary p99 latency 10.2 ms > 2 x stable p99 5.0 ms (floor 5 ms) "
            "(second window in a row)"
        ]


@pytest.mark.parametrize(("canary_ms", "outcome"), [(500.0, "pass"), (502.0, "fail")])
def test_latency_cap_boundary(canary_ms: float, outcome: str) -> None:
    result = verdict(version(latency=p99_at(400.0)), version(latency=p99_at(canary_ms)))

    assert result.outcome == outcome
    if outcome == "fail":
        assert result.reasons == ["canary p99 latency 502.0 ms > cap 500 ms"]


def test_a_canary_slower_on_every_request_fails_on_the_median_under_a_noisy_stable_tail() -> None:
    # Stable: most requests in 10-25 ms, a tail to 250 ms (queues, pauses). Canary: every
    # request 100-250 ms, so its p99 is within 2 x stable's, but its median is not: by far
    # more than a pause of the host explains, so it fails at once.
    stable = {0.005: 0.0, 0.01: 0.0, 0.025: 180.0, 0.25: 200.0, INF: 200.0}
    canary = {0.005: 0.0, 0.01: 0.0, 0.025: 0.0, 0.1: 0.0, 0.25: 200.0, INF: 200.0}

    result = verdict(version(latency=stable), version(latency=canary))

    assert result.outcome == "fail"
    assert [reason.split(" ms")[0] for reason in result.reasons] == ["canary p50 latency 175.0"]
    assert result.figures["canary_p99_ms"] < 2 * result.figures["stable_p99_ms"]


@pytest.mark.parametrize(("canary_ms", "outcome"), [(40.0, "suspect"), (40.5, "fail")])
def test_a_median_over_twice_its_ratio_fails_at_once_and_nearer_it_is_confirmed(
    canary_ms: float, outcome: str
) -> None:
    # Medians of 10 ms and `canary_ms`; the same tail to 100 ms, so the p99s agree.
    stable = {0.0: 0.0, 0.01: 100.0, 0.1: 200.0, INF: 200.0}
    canary = {0.0: 0.0, canary_ms / 1000: 100.0, 0.1: 200.0, INF: 200.0}

    result = verdict(version(latency=stable), version(latency=canary))

    assert result.outcome == outcome
    assert result.reasons[0].startswith(f"canary p50 latency {canary_ms:.1f} ms > 2 x stable p50")


@pytest.mark.parametrize(("canary_ms", "outcome"), [(60.0, "pass"), (60.5, "suspect")])
def test_model_time_ratio_boundary(canary_ms: float, outcome: str) -> None:
    # Requests answer as fast as stable's: only the model's own time tells.
    stable = version(model=model_calls_at(20.0))
    result = verdict(stable, version(model=model_calls_at(canary_ms)))
    again = verdict(stable, version(model=model_calls_at(canary_ms)), breached_before=True)

    assert result.outcome == outcome
    assert result.figures["stable_model_p50_ms"] == pytest.approx(20.0)
    breach = "canary model p50 latency 60.5 ms > 3 x stable model p50 20.0 ms"
    if outcome == "suspect":
        assert result.reasons == [f"{breach}: the window runs again to confirm"]
        assert again.outcome == "fail"
        assert again.reasons == [f"{breach} (second window in a row)"]
    else:
        assert again.outcome == "pass"


def test_model_time_of_too_few_calls_is_not_compared() -> None:
    stable = version(model=model_calls_at(20.0))
    few = version(model=model_calls_at(200.0, calls=analysis.MIN_MODEL_CALLS - 1))

    result = verdict(stable, few)

    assert result.outcome == "pass"
    assert result.figures["canary_model_p50_ms"] is None


def test_five_stragglers_do_not_decide_the_p99_of_a_small_window() -> None:
    # One pause of the canary's process delays every request it holds at once.
    quick = {0.005: 0.0, 0.01: 60.0, INF: 60.0}
    five_delayed = {0.005: 0.0, 0.01: 55.0, 0.25: 60.0, INF: 60.0}
    six_delayed = {0.005: 0.0, 0.01: 54.0, 0.25: 60.0, INF: 60.0}

    assert verdict(version(60, latency=quick), version(60, latency=five_delayed)).outcome == "pass"
    assert (
        verdict(version(60, latency=quick), version(60, latency=six_delayed)).outcome == "suspect"
    )


def test_class_divergence_boundary() -> None:
    stable, canary = version(predicted={"a": 100, "b": 100}), version(predicted={"a": 30, "b": 170})
    divergence = js_divergence(stable.counts.predicted, canary.counts.predicted)
    assert divergence is not None

    assert verdict(stable, canary, prediction_divergence_max=divergence).outcome == "pass"
    result = verdict(stable, canary, prediction_divergence_max=divergence - 1e-9)
    assert result.outcome == "fail"
    assert result.reasons[0].startswith(f"predicted-class divergence {divergence:.3f} > ")
    assert result.reasons[0].endswith("canary a 15.0%, b 85.0% vs stable a 50.0%, b 50.0%")


def test_probability_divergence_boundary() -> None:
    calm = {"a": {0.5: 100.0, 1.0: 200.0, INF: 200.0}}
    sure = {"a": {0.5: 50.0, 1.0: 200.0, INF: 200.0}}
    stable, canary = version(probabilities=calm), version(probabilities=sure)
    divergence = js_divergence({0: 100, 1: 100}, {0: 50, 1: 150})
    assert divergence is not None

    assert verdict(stable, canary, prediction_divergence_max=divergence).outcome == "pass"
    result = verdict(stable, canary, prediction_divergence_max=divergence - 1e-9)
    assert result.outcome == "fail"
    assert result.reasons == [
        f"predicted-probability divergence {divergence:.3f} > {divergence - 1e-9:g} "
        "(Jensen-Shannon, class 'a')"
    ]


def test_a_canary_that_predicts_nothing_diverges_completely() -> None:
    result = verdict(version(), version(predicted={}))

    assert result.outcome == "fail"
    assert result.figures["class_divergence"] == 1.0


# ---------------------------------------------------------------- too few requests


def test_too_few_canary_requests_is_inconclusive() -> None:
    result = verdict(version(), version(MIN_REQUESTS - 1))

    assert result.outcome == "inconclusive"
    assert result.reasons == ["only 49 canary requests in the window (< 50): too few to judge"]


def test_enough_canary_requests_are_judged() -> None:
    assert verdict(version(), version(MIN_REQUESTS)).outcome == "pass"


def test_a_canary_with_no_requests_is_inconclusive_not_a_division_by_zero() -> None:
    result = verdict(version(), version(0))

    assert result.outcome == "inconclusive"
    assert result.figures["canary_error_rate"] is None


def test_few_canary_requests_fail_when_their_errors_already_break_the_cap() -> None:
    # 10 errors out of 12: even 38 more successes would leave 20% > 5%
    assert verdict(version(), version(12, 10)).outcome == "fail"
    # 2 errors out of 12: 38 more successes would make it 4%, so wait
    assert verdict(version(), version(12, 2)).outcome == "inconclusive"


def test_too_few_stable_requests_leaves_only_the_caps() -> None:
    few = version(10)

    result = verdict(few, version(200, predicted={"a": 200.0}))  # diverges, but from what?
    assert result.outcome == "inconclusive"
    assert result.reasons == [
        "only 10 stable requests in the window (< 50): no baseline to compare the canary with"
    ]
    assert verdict(few, version(200, 40)).outcome == "fail"
    assert verdict(few, version(200, latency=p99_at(900.0))).outcome == "fail"


# ---------------------------------------------------------------- simulated canaries

# The service's request-duration buckets, as on /metrics.
LATENCY_BOUNDS = (*LATENCY_BUCKETS, INF)
PROBABILITY_BOUNDS = (*PROBABILITY_BUCKETS, INF)
CLASSES = ("malignant", "benign")


@pytest.fixture(scope="module")
def test_set_probabilities() -> np.ndarray:
    """Predicted probabilities on a held-out test set, from a model like the template's."""
    features, target = load_breast_cancer(return_X_y=True)
    train_x, test_x, train_y, _ = train_test_split(
        features, target, test_size=0.2, stratify=target, random_state=42
    )
    model = RandomForestClassifier(
        n_estimators=200, max_depth=8, min_samples_leaf=2, random_state=42
    ).fit(train_x, train_y)
    return model.predict_proba(test_x)  # columns in CLASSES order (target 0 is malignant)


def cumulative(values: np.ndarray, bounds: tuple[float, ...]) -> dict[float, float]:
    return {bound: float((values <= bound).sum()) for bound in bounds}


def served(probabilities: np.ndarray, latencies: np.ndarray, server_errors: int = 0) -> Window:
    """The window of a version that answered these rows (one per request), plus 5xx ones."""
    predicted = np.asarray(CLASSES)[probabilities.argmax(axis=1)]
    return Window(
        Snapshot(
            requests_by_status={"200": float(len(probabilities)), "500": float(server_errors)},
            latency_buckets=cumulative(latencies, LATENCY_BOUNDS),
            predicted={name: float((predicted == name).sum()) for name in set(predicted)},
            probability_buckets={
                name: cumulative(probabilities[:, column], PROBABILITY_BOUNDS)
                for column, name in enumerate(CLASSES)
            },
        )
    )


def identical(probabilities: np.ndarray) -> np.ndarray:
    return probabilities


def one_class(probabilities: np.ndarray) -> np.ndarray:
    return np.tile([0.1, 0.9], (len(probabilities), 1))


def flattened(probabilities: np.ndarray) -> np.ndarray:
    """Same ranking, so the same classes, but probabilities pulled towards the middle."""
    shifted = probabilities**0.3
    return shifted / shifted.sum(axis=1, keepdims=True)


def simulate(
    pool: np.ndarray,
    seed: int,
    stable_requests: int,
    canary_requests: int,
    model: Callable[[np.ndarray], np.ndarray] = identical,
    slowdown: float = 1.0,
    canary_errors: int = 0,
    error_rate: float = 0.0,
    breached_before: bool = False,
) -> analysis.Analysis:
    """One window: both versions answer random test rows; latencies ~8 ms, lognormal.

    `error_rate`: both versions fail that share of requests with a 5xx, at random.
    `breached_before`: the window before it was suspect.
    """
    rng = np.random.default_rng(seed)

    def draw(requests: int) -> tuple[np.ndarray, np.ndarray, int]:
        errors = int(rng.binomial(requests, error_rate))
        rows = pool[rng.integers(0, len(pool), requests - errors)]
        return rows, rng.lognormal(np.log(0.008), 0.35, requests - errors), errors

    stable = served(*draw(stable_requests))
    rows, latencies, errors = draw(canary_requests)
    canary = served(model(rows), latencies * slowdown, errors + canary_errors)
    return analyse(stable, canary, DEFAULTS, MIN_REQUESTS, breached_before)


# (stable, canary) requests per window: equal split, and stable-heavy early steps.
WINDOW_SIZES = [(100, 100), (200, 200), (150, 50), (450, 50)]


@pytest.mark.parametrize(("stable_requests", "canary_requests"), WINDOW_SIZES)
def test_an_identical_canary_never_fails(
    test_set_probabilities: np.ndarray, stable_requests: int, canary_requests: int
) -> None:
    failed = [
        (seed, result.reasons)
        for seed in range(300)
        if (
            result := simulate(test_set_probabilities, seed, stable_requests, canary_requests)
        ).outcome
        != "pass"
    ]
    assert failed == []


@pytest.mark.parametrize(("stable_requests", "canary_requests"), [(100, 100), (200, 200)])
def test_an_identical_canary_erring_as_often_as_stable_never_fails(
    test_set_probabilities: np.ndarray, stable_requests: int, canary_requests: int
) -> None:
    for seed in range(300):
        result = simulate(
            test_set_probabilities, seed, stable_requests, canary_requests, error_rate=0.01
        )
        assert result.outcome == "pass", (seed, result.reasons)


def test_an_identical_canary_rarely_fails_with_the_fewest_requests(
    test_set_probabilities: np.ndarray,
) -> None:
    # 50 requests a side is where sampling noise and a real shift start to overlap: the
    # divergence of two such samples of one model exceeds 0.1 now and then. Measured here
    # at about 0.1-0.2% of windows; prefer min_requests >= 100 (see the final report).
    outcomes = [simulate(test_set_probabilities, seed, 50, 50).outcome for seed in range(1000)]
    assert outcomes.count("fail") <= 5


@pytest.mark.parametrize(("stable_requests", "canary_requests"), [(50, 50), *WINDOW_SIZES])
def test_a_one_class_canary_always_fails(
    test_set_probabilities: np.ndarray, stable_requests: int, canary_requests: int
) -> None:
    for seed in range(100):
        result = simulate(test_set_probabilities, seed, stable_requests, canary_requests, one_class)
        assert result.outcome == "fail", seed
        assert result.reasons[0].startswith("predicted-class divergence")


@pytest.mark.parametrize(
    ("stable_requests", "canary_requests", "least_failing"),
    [(50, 50, 0.9), (100, 100, 0.99), (200, 200, 1.0), (150, 50, 0.9), (450, 50, 0.97)],
)
def test_a_canary_with_flattened_probabilities_fails(
    test_set_probabilities: np.ndarray,
    stable_requests: int,
    canary_requests: int,
    least_failing: float,
) -> None:
    # Its classes are the same; only the probability histograms can tell. Rows the model is
    # certain of (p exactly 0 or 1) stay put, so with few requests a window can miss it;
    # the next window catches it.
    results = [
        simulate(test_set_probabilities, seed, stable_requests, canary_requests, flattened)
        for seed in range(300)
    ]
    failing = [r for r in results if r.outcome == "fail"]
    assert len(failing) >= least_failing * len(results)
    assert all(r.reasons[0].startswith("predicted-probability divergence") for r in failing)


def test_a_five_times_slower_canary_fails_in_its_first_window(
    test_set_probabilities: np.ndarray,
) -> None:
    for seed in range(100):
        result = simulate(test_set_probabilities, seed, 100, 100, slowdown=5.0)
        assert result.outcome == "fail", seed
        assert any(reason.startswith("canary p50") for reason in result.reasons)  # every request


def test_a_canary_slower_by_a_little_over_the_ratio_is_confirmed_before_it_fails(
    test_set_probabilities: np.ndarray,
) -> None:
    for seed in range(100):
        first = simulate(test_set_probabilities, seed, 100, 100, slowdown=3.0)
        again = {"slowdown": 3.0, "breached_before": True}
        second = simulate(test_set_probabilities, seed + 100, 100, 100, **again)
        assert first.outcome == "suspect", (seed, first.reasons)
        assert second.outcome == "fail", seed


def test_a_canary_with_20_percent_5xx_fails(test_set_probabilities: np.ndarray) -> None:
    for seed in range(100):
        result = simulate(test_set_probabilities, seed, 100, 80, canary_errors=20)
        assert result.outcome == "fail", seed
        assert result.figures["canary_error_rate"] == 0.2
