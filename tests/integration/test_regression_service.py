"""A regressor served through a real `bentoml serve` process: values, metrics, bad input.

The project is switched to the regression sample by data, schema.yaml and params.yaml only;
`pr2prod bento` then builds a bento whose service answers numbers.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import (
    Server,
    assert_fuzzing_finds_no_server_error,
    free_port,
    run,
    start_server,
    stop_server,
)

from bench import faults
from pr2prod.data.records import split_records
from pr2prod.deploy.checks import golden_rows_answered
from pr2prod.deploy.local import export_bento
from pr2prod.deploy.observations import parse_metrics, parse_samples
from pr2prod.deploy.releases import release_of_model
from pr2prod.monitor.demo import LabelledRows, held_out_check
from pr2prod.monitor.report import version_summary
from pr2prod.schema import load_schema
from pr2prod.serving.reference import REFERENCE_FILE, Reference, ValueReference
from pr2prod.serving.telemetry import PREDICTED_VALUE
from pr2prod.settings import load_settings

pytestmark = pytest.mark.integration


@contextmanager
def serving(bento_tag: str, folder: Path) -> Iterator[Server]:
    """A bento of the store, unpacked in `folder` and served with a BENTOML_HOME of its own
    (a server sharing one with another would empty the other's /metrics)."""
    folder.mkdir(exist_ok=True)
    export_bento(bento_tag, Path(os.environ["BENTOML_HOME"]), folder / "bento")
    (folder / "home").mkdir()
    port, log = free_port(), folder / "server.log"
    command = ["bentoml", "serve", str(folder / "bento"), "--host", "127.0.0.1"]
    env = {**os.environ, "BENTOML_HOME": str(folder / "home")}
    process, url = start_server([*command, "--port", str(port)], folder, log, port, env=env)
    try:
        yield Server(url, log, process.pid)
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def regressor(
    regression_bento_tag: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    with serving(regression_bento_tag, tmp_path_factory.mktemp("regressor")) as server:
        yield server


@pytest.fixture(scope="module")
def client(regressor: Server) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=regressor.url, timeout=30) as session:
        yield session


@pytest.fixture(scope="module")
def test_records(reproduced_regression_project: Path) -> list[dict[str, Any]]:
    schema = load_schema(reproduced_regression_project / "schema.yaml")
    return split_records(reproduced_regression_project / "artifacts/split/test.csv", schema)


@pytest.fixture
def record(test_records: list[dict[str, Any]]) -> dict[str, Any]:
    return test_records[0]


def value_reference(project: Path, client: httpx.Client) -> ValueReference:
    """The served model's reference, read from the BentoML store it was built into."""
    tag = client.get("/model").json()["model_tag"]
    name, version = tag.split(":")
    folder = Path(os.environ["BENTOML_HOME"]) / "models" / name / version
    predictions = Reference.load(folder / REFERENCE_FILE).predictions
    assert isinstance(predictions, ValueReference)
    return predictions


def test_served_values_equal_the_offline_evaluation(
    client: httpx.Client, test_records: list[dict[str, Any]], reproduced_regression_project: Path
) -> None:
    offline = pd.read_csv(reproduced_regression_project / "results" / "predictions.csv")

    response = client.post("/predict", json={"records": test_records})

    assert response.status_code == 200, response.text
    served = response.json()
    assert len(served) == len(offline) == 111
    for answer, expected in zip(served, offline["predicted"], strict=True):
        assert set(answer) == {"predicted", "model_version", "prediction_id"}
        assert isinstance(answer["predicted"], float)
        # predictions.csv keeps six decimals; the service answers every digit.
        assert answer["predicted"] == pytest.approx(expected, abs=5e-7)


def test_the_model_card_says_the_compiled_regressor_serves_and_names_its_target(
    client: httpx.Client, reproduced_regression_project: Path
) -> None:
    metadata = client.get("/model").json()

    assert metadata["card"]["estimator"] == "sklearn.ensemble.RandomForestRegressor"
    inference = metadata["card"]["inference"]
    assert inference["runtime"] == "onnxruntime", inference
    assert inference["parity"]["equal"] and inference["parity"]["rows"] == 111 + 8
    assert metadata["classes"] == []
    assert metadata["target"] == {
        "name": "progression",
        "unit": "disease progression score after one year",
    }
    reference = value_reference(reproduced_regression_project, client)
    assert metadata["value_bounds"] == list(reference.value_bounds)
    committed = json.loads((reproduced_regression_project / "results/metrics.json").read_text())
    assert metadata["test_metrics"] == committed and "rmse" in committed


def test_the_value_histogram_has_the_buckets_of_the_models_own_test_predictions(
    client: httpx.Client, test_records: list[dict[str, Any]], reproduced_regression_project: Path
) -> None:
    reference = value_reference(reproduced_regression_project, client)
    version = client.get("/model").json()["model_version"]

    def buckets() -> dict[float, float]:
        samples = parse_samples(client.get("/metrics").text)
        found = {
            float(labels["le"]): value
            for name, labels, value in samples
            if name == f"{PREDICTED_VALUE}_bucket" and labels["model_version"] == version
        }
        assert found, "no predicted-value histogram on /metrics"
        return found

    before = buckets()
    answers = client.post("/predict", json={"records": test_records}).json()
    after = buckets()

    # Deciles of the test predictions: at most ten buckets, the last one +Inf.
    assert sorted(after) == [*reference.value_bounds, math.inf]
    assert 2 <= len(after) <= 10
    added = {le: after[le] - before.get(le, 0.0) for le in after}
    assert added[math.inf] == len(test_records)
    # The test rows again: each bucket gains what the reference counted in it.
    cumulative = [sum(reference.values[: i + 1]) for i in range(len(reference.values))]
    assert [added[le] for le in sorted(added)] == cumulative
    assert all(isinstance(answer["predicted"], float) for answer in answers)


def test_a_regressor_exports_no_class_series_and_keeps_the_shared_ones(
    client: httpx.Client, record: dict
) -> None:
    client.post("/predict", json={"records": [record]})
    text = client.get("/metrics").text
    snapshot = parse_metrics(text)

    assert snapshot.predicted == {} and snapshot.probability_buckets == {}
    assert snapshot.requests_by_status.get("200", 0) >= 1
    assert snapshot.model_seconds_buckets[math.inf] >= 1
    assert "pr2prod_feature_values_total{" in text


def change(record: dict, **fields: Any) -> dict:
    return {**record, **fields}


BAD_INPUTS = {
    "missing field": lambda r: {"records": [{k: v for k, v in r.items() if k != "bmi"}]},
    "extra field": lambda r: {"records": [change(r, progression=150.0)]},
    "wrong type": lambda r: {"records": [change(r, bmi="high")]},
    "null": lambda r: {"records": [change(r, age=None)]},
    "out of range": lambda r: {"records": [change(r, bmi=5.0)]},
    "unseen category": lambda r: {"records": [change(r, sex="3")]},
    "category as a number": lambda r: {"records": [change(r, sex=1)]},
    "empty list": lambda r: {"records": []},
}


@pytest.mark.parametrize("case", BAD_INPUTS, ids=str)
def test_bad_input_is_a_client_error(case: str, client: httpx.Client, record: dict) -> None:
    response = client.post("/predict", json=BAD_INPUTS[case](record))

    assert response.status_code == 400, response.text


def test_nan_and_infinity_are_refused(client: httpx.Client, record: dict) -> None:
    for value in (math.nan, math.inf):
        body = json.dumps({"records": [change(record, s5=value)]}, allow_nan=True)
        response = client.post(
            "/predict", content=body, headers={"content-type": "application/json"}
        )
        assert response.status_code == 400, response.text
        assert "s5" in response.text


def test_make_smoke_checks_the_golden_values_within_the_tolerance(
    regressor: Server, reproduced_regression_project: Path
) -> None:
    result = run("pr2prod", "smoke", "--url", regressor.url, cwd=reproduced_regression_project)

    assert "answered 8 golden rows as evaluated" in result.stdout, result.stdout


def test_the_canary_checks_golden_values_over_http_before_traffic(regressor: Server) -> None:
    passed, summary = golden_rows_answered(regressor.url)

    assert passed, summary
    assert summary.startswith("golden rows: 8 answered as evaluated")


def test_smoke_fails_when_the_served_values_are_not_the_evaluated_ones(
    regressor: Server, reproduced_regression_project: Path, tmp_path: Path
) -> None:
    """The workspace's model is retrained with another seed: the running service, which
    still serves the first model, no longer answers its golden rows within tolerance."""
    project = tmp_path / "retrained"
    run("cp", "-a", reproduced_regression_project, project, cwd=tmp_path)
    params = project / "params.yaml"
    params.write_text(params.read_text().replace("seed: 5", "seed: 6"))
    run("dvc", "repro", cwd=project)
    run("pr2prod", "bento", cwd=project)

    result = run("pr2prod", "smoke", "--url", regressor.url, cwd=project, check=False)

    assert result.returncode == 1
    assert "golden rows differ from the evaluation by up to" in result.stderr


def test_a_fuzz_run_of_the_openapi_spec_finds_no_server_error(
    regressor: Server, tmp_path: Path
) -> None:
    assert_fuzzing_finds_no_server_error(regressor.url, tmp_path)


@pytest.mark.parametrize("name", faults.BAD_REGRESSORS, ids=str)
def test_a_bad_regressor_is_packaged_served_and_ready_with_its_fault(
    name: str,
    reproduced_regression_project: Path,
    test_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    """Each fault of the catalogue becomes a bento as the pipeline makes one, whose service
    is ready (its golden rows are its own answers) and answers with the fault."""
    project = reproduced_regression_project
    genuine = joblib.load(project / "artifacts/model/model.joblib")
    spread = faults.TargetSpread.of_split(project / "artifacts/split/train.csv", "progression")
    offline = pd.read_csv(project / "results/predictions.csv")["predicted"].to_numpy()
    wrapper = faults.BAD_REGRESSORS[name].wrap(genuine, spread)
    release = release_of_model(wrapper, tmp_path / "release", workspace=project, modules=[faults])

    with serving(release, tmp_path / "served") as server:
        answers = httpx.post(f"{server.url}/predict", json={"records": test_records}).json()
        card = httpx.get(f"{server.url}/model").json()["card"]

    values = np.array([answer["predicted"] for answer in answers])
    if isinstance(wrapper, faults.ConstantValue):
        assert set(values.tolist()) == {spread.mean}
    else:
        assert np.abs(values - (offline + spread.std)).max() < 1e-5
    # A wrapper is no pipeline the converter knows: it runs as a Python object.
    assert card["inference"]["runtime"] == "scikit-learn"


def test_true_values_sent_back_give_the_test_splits_errors_live(
    client: httpx.Client,
    regressor: Server,
    test_records: list[dict[str, Any]],
    reproduced_regression_project: Path,
    tmp_path: Path,
) -> None:
    """Every held-out row predicted and its true value sent back by prediction id: the
    monitor's live MAE and RMSE are the offline evaluation's."""
    answers = client.post("/predict", json={"records": test_records}).json()
    truth = pd.read_csv(reproduced_regression_project / "artifacts/split/test.csv")["progression"]
    feedback = [
        {"prediction_id": answer["prediction_id"], "label": float(value)}
        for answer, value in zip(answers, truth, strict=True)
    ]
    assert client.post("/feedback", json={"feedback": feedback}).json() == {"accepted": 111}
    wrong = [{"prediction_id": answers[0]["prediction_id"], "label": "x"}]
    refused = client.post("/feedback", json={"feedback": wrong})
    assert refused.status_code == 400 and "must be a number" in refused.json()["error"]

    options = ("--url", regressor.url, "--output", tmp_path)
    run("pr2prod", "monitor", *options, cwd=reproduced_regression_project)

    report = json.loads((tmp_path / "drift.json").read_text())
    performance = {f["metric"]: f for v in report["versions"] for f in v["performance"]}
    offline = json.loads((reproduced_regression_project / "results/metrics.json").read_text())
    assert set(performance) == {"mae", "rmse"}
    for name, finding in performance.items():
        # The same rows: live equals test (the service rounds nothing; metrics.json keeps 6).
        assert finding["live_value"] == pytest.approx(offline[name], abs=1e-5), name
        assert finding["test_value"] == pytest.approx(offline[name], abs=1e-5), name
        assert finding["labelled"] == 111


def test_make_runs_monitoring_check_judges_a_regressor_too(
    regressor: Server,
    reproduced_regression_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The check `make run` ends with: the held-out rows and their true values, judged."""
    monkeypatch.chdir(reproduced_regression_project)
    schema = load_schema(Path("schema.yaml"))
    rows = LabelledRows.of_split(Path("artifacts/split/test.csv"), schema)

    report = held_out_check(regressor.url, rows, schema, load_settings(), tmp_path)

    (version,) = report.versions
    summary = version_summary(version)
    assert summary.startswith("🟢 no drift (111 records; drifted: nothing; 111 labelled"), summary
    assert {f.metric for f in version.performance} == {"mae", "rmse"}
    assert any(f.name == "predicted value" and f.verdict == "no drift" for f in version.findings)


def test_the_drift_monitor_judges_a_regressors_predicted_values(
    regression_bento_tag: str, reproduced_regression_project: Path, tmp_path: Path
) -> None:
    """The monitor demo on the regressor: its predicted values are tested against the test
    split's, in the same buckets; only the shifted feature raises an alarm."""
    options = ("--feature", "bmi", "--output", tmp_path / "demo")
    output = run("pr2prod", "monitor-demo", *options, cwd=reproduced_regression_project).stdout

    lines = {line.split(": ")[1]: line for line in output.splitlines() if line.count(": ") >= 2}
    clean_line = lines["held-out rows, labelled"]
    assert "🟢 no drift (111 records; drifted: nothing; 111 labelled" in clean_line
    assert "labels changed" not in lines  # a numeric target has no class to change
    assert "🔴 drift" in lines["bmi shifted"] and "drifted: bmi" in lines["bmi shifted"]
    findings = {}
    for window in ("clean", "shifted"):
        report = json.loads((tmp_path / "demo" / window / "drift.json").read_text())
        (version,) = report["versions"]
        (findings[window],) = [f for f in version["findings"] if f["name"] == "predicted value"]
        assert findings[window]["rows"] == version["rows"]
        assert findings[window]["p_value"] is not None  # tested, not "not enough data"
    clean = findings["clean"]
    # The held-out rows are the test split the reference was made from: the very counts.
    assert clean["live"] == clean["reference"] and sum(clean["reference"].values()) == 111
    assert len(clean["reference"]) == 10 and clean["verdict"] == "no drift"
    assert findings["shifted"]["rows"] == 400
