"""The model service through a real `bentoml serve` process: answers, health, bad input."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml
from conftest import Server, assert_fuzzing_finds_no_server_error

from pr2prod.data.records import split_records
from pr2prod.deploy.observations import parse_metrics, parse_samples
from pr2prod.monitor.live import live_counts
from pr2prod.schema import load_schema
from pr2prod.serving.telemetry import LATENCY_BUCKETS

pytestmark = pytest.mark.integration

GATEWAY_ROUTE = Path(__file__).parents[2] / "deploy/k8s/overlays/gateway/httproute.yaml"


@pytest.fixture(scope="module")
def client(served_bento: Server) -> httpx.Client:
    with httpx.Client(base_url=served_bento.url, timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def test_records(reproduced_project: Path) -> list[dict[str, Any]]:
    schema = load_schema(reproduced_project / "schema.yaml")
    return split_records(reproduced_project / "artifacts" / "split" / "test.csv", schema)


@pytest.fixture
def record(test_records: list[dict[str, Any]]) -> dict[str, Any]:
    return test_records[0]


JSON = {"content-type": "application/json"}


def post(client: httpx.Client, body: Any) -> httpx.Response:
    # allow_nan: JSON has no NaN, but clients do send it; the service must refuse it.
    content = body if isinstance(body, bytes) else json.dumps(body, allow_nan=True).encode()
    return client.post("/predict", content=content, headers=JSON)


def test_served_predictions_equal_the_offline_evaluation(
    client: httpx.Client, test_records: list[dict[str, Any]], reproduced_project: Path
) -> None:
    offline = pd.read_csv(reproduced_project / "results" / "predictions.csv")

    response = post(client, {"records": test_records})

    assert response.status_code == 200, response.text
    served = response.json()
    assert len(served) == len(offline) == 114
    for answer, (_, expected) in zip(served, offline.iterrows(), strict=True):
        assert answer["predicted"] == expected["predicted"]
        assert answer["probabilities"]["malignant"] == pytest.approx(
            expected["proba_malignant"], abs=2e-6
        )


def test_every_answer_names_the_model_version(client: httpx.Client, record: dict) -> None:
    metadata = client.get("/model").json()

    (answer,) = post(client, {"records": [record]}).json()

    assert answer["model_version"] == metadata["model_version"]
    assert set(answer["probabilities"]) == {"malignant", "benign"}
    assert sum(answer["probabilities"].values()) == pytest.approx(1, abs=1e-5)


def test_model_metadata_tells_where_the_model_came_from(
    client: httpx.Client, reproduced_project: Path
) -> None:
    metadata = client.get("/model").json()

    assert metadata["model_tag"].startswith("pr2prod-model:")
    assert metadata["card"]["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    committed = json.loads((reproduced_project / "results" / "metrics.json").read_text())
    assert metadata["test_metrics"] == committed


def test_health_endpoints_answer(client: httpx.Client) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_prediction_metrics_are_exported(client: httpx.Client, record: dict) -> None:
    post(client, {"records": [record, record]})
    metrics = client.get("/metrics").text

    assert "pr2prod_predictions_total{" in metrics
    assert 'pr2prod_predicted_probability_bucket{class_name="malignant"' in metrics
    version = client.get("/model").json()["model_version"]
    assert f'model_version="{version}"' in metrics


def test_request_and_model_times_are_recorded_in_the_buckets_the_canary_analysis_reads(
    client: httpx.Client, record: dict
) -> None:
    post(client, {"records": [record]})
    snapshot = parse_metrics(client.get("/metrics").text)

    for buckets in (snapshot.latency_buckets, snapshot.model_seconds_buckets):
        assert sorted(buckets) == [*LATENCY_BUCKETS, math.inf]
        assert buckets[math.inf] >= 1


def change(record: dict, **fields: Any) -> dict:
    return {**record, **fields}


def without(record: dict, name: str) -> dict:
    return {key: value for key, value in record.items() if key != name}


BAD_INPUTS = {
    "malformed JSON": (lambda r: b'{"records": [', "json"),
    "not a list": (lambda r: {"records": r}, "records"),
    "no records key": (lambda r: {"rows": [r]}, "records"),
    "missing field": (lambda r: {"records": [without(r, "mean_radius")]}, "mean_radius"),
    "extra field": (lambda r: {"records": [change(r, colour="red")]}, "colour"),
    "wrong type": (lambda r: {"records": [change(r, mean_texture="abc")]}, "mean_texture"),
    "text number": (lambda r: {"records": [change(r, mean_texture="12.5")]}, "mean_texture"),
    "null": (lambda r: {"records": [change(r, mean_area=None)]}, "mean_area"),
    "NaN": (lambda r: {"records": [change(r, mean_area=math.nan)]}, "mean_area"),
    "Infinity": (lambda r: {"records": [change(r, worst_area=math.inf)]}, "worst_area"),
    "out of range": (lambda r: {"records": [change(r, mean_radius=-1.0)]}, "mean_radius"),
    "empty list": (lambda r: {"records": []}, "records"),
    "too many records": (lambda r: {"records": [r] * 1001}, "records"),
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_bad_input_is_a_client_error_naming_the_field(
    case: str, client: httpx.Client, record: dict
) -> None:
    make_body, field = BAD_INPUTS[case]

    response = post(client, make_body(record))

    assert response.status_code == 400, response.text
    assert field in response.text.lower() if field == "json" else field in response.text


def test_an_oversized_body_is_refused_before_parsing(client: httpx.Client) -> None:
    response = post(client, b'{"records": [' + b" " * 2_000_000 + b"]}")

    assert response.status_code == 413
    assert "larger than" in response.json()["error"]


@pytest.mark.parametrize("content_type", ["multipart/form-data", "text/plain"])
def test_a_body_that_is_not_json_is_refused(
    client: httpx.Client, record: dict, content_type: str
) -> None:
    response = client.post(
        "/predict",
        content=json.dumps({"records": [record]}),
        headers={"content-type": content_type},
    )

    assert response.status_code == 415
    assert "application/json" in response.json()["error"]


def test_client_errors_are_logged_in_one_line(
    client: httpx.Client, record: dict, served_bento: Server
) -> None:
    post(client, {"records": [without(record, "mean_radius")]})

    log = served_bento.log.read_text()
    assert "client error: records.0.mean_radius: Field required" in log
    assert "Traceback" not in log


def test_a_fuzz_run_of_the_openapi_spec_finds_no_server_error(
    served_bento: Server, tmp_path: Path
) -> None:
    assert_fuzzing_finds_no_server_error(served_bento.url, tmp_path)


def test_an_oversized_chunked_body_is_refused_too(client: httpx.Client) -> None:
    """A body sent in chunks declares no length: it must still get 413, not a 500."""

    def chunks() -> Any:  # a generator: httpx sends it with Transfer-Encoding: chunked
        yield b'{"records": ['
        for _ in range(32):
            yield b" " * 65_536
        yield b"]}"

    response = client.post("/predict", content=chunks(), headers=JSON)

    assert response.request.headers["transfer-encoding"] == "chunked"
    assert response.status_code == 413, response.text
    assert "larger than" in response.json()["error"]


def test_a_chunked_body_within_the_limit_is_answered(client: httpx.Client, record: dict) -> None:
    body = json.dumps({"records": [record]}).encode()

    response = client.post("/predict", content=iter([body[:10], body[10:]]), headers=JSON)

    assert response.status_code == 200, response.text
    assert response.json()[0]["predicted"] in {"malignant", "benign"}


def test_a_client_chosen_field_name_cannot_forge_log_lines_or_flood_the_answer(
    client: httpx.Client, record: dict, served_bento: Server
) -> None:
    forged = "colour\n2026-01-01T00:00:00+0000 [ERROR] forged line"
    huge = "k" * 900_000

    response = post(client, {"records": [change(record, **{forged: 1, huge: 2})]})

    assert response.status_code == 400
    assert len(response.content) < 10_000
    names = [item["loc"][-1] for item in response.json()["detail"]]
    assert "colour\\n2026-01-01T00:00:00+0000 [ERROR] forged line" in names  # still named
    assert any(name.startswith("kkkk") and "900000 characters" in name for name in names)
    lines = served_bento.log.read_text().splitlines()
    assert not any(line.startswith("2026-01-01T00:00:00+0000 [ERROR] forged") for line in lines)
    assert max(map(len, lines)) < 10_000


def multiprocess_metric_bytes() -> int:
    folder = Path(os.environ["BENTOML_HOME"]) / "prometheus_multiproc_dir"
    return sum(file.stat().st_size for file in folder.iterdir())


def test_unknown_paths_make_no_metric_series(client: httpx.Client, record: dict) -> None:
    """Made-up paths once became series each: 2,000 made /metrics 21 MB, past the scrape."""
    files_before = multiprocess_metric_bytes()

    for number in range(3_000):
        method = "POST" if number % 3 == 0 else "GET"
        response = client.request(method, f"/probe-{number}/x%0Ay", content=b"{}", headers=JSON)
        assert response.status_code == 404

    metrics = client.get("/metrics")
    assert metrics.status_code == 200
    assert len(metrics.content) < 300_000
    assert "probe-" not in metrics.text
    assert multiprocess_metric_bytes() - files_before < 1_000_000
    assert post(client, {"records": [record]}).status_code == 200


@pytest.mark.parametrize(
    "path", ["/", "/docs.json", "/schema.json", "/livez", "/healthz", "/readyz", "/model"]
)
def test_every_endpoint_the_service_serves_still_answers(client: httpx.Client, path: str) -> None:
    assert client.get(path).status_code == 200


@pytest.mark.parametrize(
    "header", [("x-forwarded-for", "203.0.113.7"), ("forwarded", "for=203.0.113.7")]
)
def test_metrics_are_not_served_through_a_proxy(client: httpx.Client, header: tuple) -> None:
    """The router and gateways add a forwarding header; the scraper asks the pod directly."""
    name, value = header

    assert client.get("/metrics", headers={name: value}).status_code == 404
    assert client.get("/metrics").status_code == 200
    assert client.get("/model", headers={name: value}).status_code == 200


def test_the_gateway_routes_only_public_endpoints_the_service_serves(
    client: httpx.Client, record: dict
) -> None:
    """A catch-all route let any made-up path (and /metrics) through to the pods."""
    route = yaml.safe_load(GATEWAY_ROUTE.read_text())
    (rule,) = route["spec"]["rules"]
    matches = [match["path"] for match in rule["matches"]]
    assert all(match["type"] == "Exact" for match in matches), matches
    routed = {match["value"] for match in matches}

    assert "/metrics" not in routed
    assert {"/predict", "/feedback", "/readyz", "/livez"} <= routed
    for path in routed - {"/predict", "/feedback"}:
        assert client.get(path).status_code == 200, path
    assert post(client, {"records": [record]}).status_code == 200


def feedback(client: httpx.Client, body: Any) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post("/feedback", content=content, headers=JSON)


def feedback_count(client: httpx.Client, version: str) -> float:
    """Labelled predictions of `version` on /metrics, read as the monitor reads them."""
    return live_counts(parse_samples(client.get("/metrics").text))[version].labelled


def test_true_labels_sent_back_by_prediction_id_are_counted(
    client: httpx.Client, test_records: list[dict[str, Any]], reproduced_project: Path
) -> None:
    answers = post(client, {"records": test_records[:5]}).json()
    ids = [answer["prediction_id"] for answer in answers]
    version = answers[0]["model_version"]
    truth = pd.read_csv(reproduced_project / "artifacts" / "split" / "test.csv")["diagnosis"]
    before = feedback_count(client, version)

    body = {
        "feedback": [
            {"prediction_id": i, "label": str(label)}
            for i, label in zip(ids, truth[:5], strict=True)
        ]
    }
    response = feedback(client, body)

    assert response.status_code == 200, response.text
    assert response.json() == {"accepted": 5}
    assert len(set(ids)) == 5 and all(i.startswith(f"{version}.") for i in ids)
    assert feedback_count(client, version) == before + 5


@pytest.mark.parametrize(
    ("body", "status", "says"),
    [
        (b"{not json", 400, "not JSON"),
        ({"records": []}, 400, '"feedback"'),
        ({"feedback": [{"prediction_id": "x", "label": "benign"}]}, 400, "item 0"),
        ({"feedback": [{"prediction_id": "v.0.0123456789ab", "label": "?"}]}, 400, "label"),
    ],
)
def test_bad_feedback_is_a_client_error_that_counts_nothing(
    client: httpx.Client, served_bento: Server, body: Any, status: int, says: str
) -> None:
    version = client.get("/model").json()["model_version"]
    before = feedback_count(client, version)

    response = feedback(client, body)

    assert response.status_code == status, response.text
    assert says in response.json()["error"]
    assert feedback_count(client, version) == before
    assert "Traceback" not in served_bento.log.read_text()
