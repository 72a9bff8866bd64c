"""`pr2prod monitor` against a real service and a real Prometheus scraping it.

The service runs from the exported bento with its own BENTOML_HOME (a second server
sharing one would wipe the other's metrics). Clean traffic is drawn from the training
split the reference summarises; shifted traffic moves one feature by about 0.7 of its
standard deviation, inside schema.yaml's bounds so the service accepts it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import numpy as np
import psutil
import pytest
import yaml
from conftest import free_port, run, start_server, stop_server, system_program

from pr2prod.data.records import request_records, split_records
from pr2prod.data.validation import load_typed
from pr2prod.deploy.local import export_bento
from pr2prod.deploy.observations import MetricsUnavailable, PrometheusSource
from pr2prod.monitor.demo import send as send_labelled
from pr2prod.monitor.live import from_prometheus, from_service
from pr2prod.readiness import wait_until_ready
from pr2prod.schema import load_schema

pytestmark = pytest.mark.integration

SHIFTED = "mean_texture"
SHIFT = 3.0  # about 0.7 standard deviations of mean_texture in the sample data


@contextlib.contextmanager
def served_bento(bento_tag: str, folder: Path) -> Iterator[str]:
    """The bento served from an export in `folder`, with a BENTOML_HOME of its own."""
    export_bento(bento_tag, Path(os.environ["BENTOML_HOME"]), folder / "bento")
    (folder / "home").mkdir()
    port = free_port()
    env = {**os.environ, "BENTOML_HOME": str(folder / "home")}
    command = [
        sys.executable,
        "-m",
        "bentoml",
        "serve",
        str(folder / "bento"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    with (folder / "serve.log").open("w") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, 90, "/readyz")
        yield url
    finally:
        stop_server(process)


@contextlib.contextmanager
def scraping_prometheus(service: str, workdir: Path) -> Iterator[str]:
    """A Prometheus of its own that scrapes `service` every second (job "monitored")."""
    binary = system_program("prometheus", "install it with `apt-get install -y prometheus`")
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
        "scrape_configs": [
            {"job_name": "monitored", "static_configs": [{"targets": [urlsplit(service).netloc]}]}
        ],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    command = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process, url = start_server(
        command, workdir, workdir / "log", port, timeout=30, path="/-/ready"
    )
    try:
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def service(bento_tag: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with served_bento(bento_tag, tmp_path_factory.mktemp("monitored")) as url:
        yield url


@pytest.fixture(scope="module")
def prometheus(service: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with scraping_prometheus(service, tmp_path_factory.mktemp("prometheus-monitor")) as url:
        yield url


@pytest.fixture(scope="module")
def training_records(reproduced_project: Path) -> list[dict]:
    schema = load_schema(reproduced_project / "schema.yaml")
    return split_records(reproduced_project / "artifacts" / "split" / "train.csv", schema)


def send(url: str, records: list[dict], count: int, seed: int, shift: float = 0.0) -> None:
    rng = np.random.default_rng(seed)
    chosen = [dict(records[i]) for i in rng.integers(0, len(records), size=count)]
    for record in chosen:
        record[SHIFTED] += shift
    for start in range(0, count, 25):
        response = httpx.post(
            f"{url}/predict", json={"records": chosen[start : start + 25]}, timeout=60
        )
        response.raise_for_status()


def monitor(project: Path, output: Path, *options: str) -> dict:
    run("pr2prod", "monitor", "--output", output, *options, cwd=project)
    return json.loads((output / "drift.json").read_text())


def caught_up(prometheus: PrometheusSource, service: str) -> float:
    """The time at which Prometheus holds the service's current counts."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        now = time.time()
        direct = from_service(service)
        try:
            if direct and from_prometheus(prometheus, 'job="monitored"', 0, now) == direct:
                return now
        except MetricsUnavailable:  # not scraped yet: a busy host starts Prometheus late
            pass
        time.sleep(0.5)
    pytest.fail("Prometheus did not catch up with the service in 60 s")


def test_clean_traffic_then_a_shift_read_from_the_service_and_from_prometheus(
    service: str,
    prometheus: str,
    training_records: list[dict],
    reproduced_project: Path,
    tmp_path: Path,
) -> None:
    source = PrometheusSource(prometheus, {})
    send(service, training_records, 400, seed=1)
    clean = monitor(reproduced_project, tmp_path / "clean", "--url", service)
    assert clean["verdict"] == "no drift", clean
    (version,) = clean["versions"]
    assert version["rows"] == 400 and version["traffic_share"] == 1.0

    before_shift = caught_up(source, service)
    send(service, training_records, 400, seed=2, shift=SHIFT)
    after_shift = caught_up(source, service)

    # From Prometheus, the range of the shifted traffic alone.
    shifted_only = from_prometheus(source, 'job="monitored"', before_shift, after_shift)
    assert [counts.rows for counts in shifted_only.values()] == [400]
    report = monitor(
        reproduced_project,
        tmp_path / "shifted",
        "--prometheus",
        prometheus,
        "--since",
        "10m",
        "--selector",
        'job="monitored"',
    )
    assert report["verdict"] == "drift"
    drifted = {f["name"] for f in report["versions"][0]["findings"] if f["verdict"] == "drift"}
    assert SHIFTED in drifted
    assert not drifted - {SHIFTED, "predicted class", "probability of malignant"}
    markdown = (tmp_path / "shifted" / "drift.md").read_text()
    assert f"`{SHIFTED}`" in markdown and "🔴 drift" in markdown
    assert (tmp_path / "shifted" / "drift.png").stat().st_size > 0


def test_without_a_source_the_monitor_says_what_to_pass(
    reproduced_project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PROMETHEUS_URL", raising=False)
    result = run("pr2prod", "monitor", cwd=reproduced_project, check=False)
    assert result.returncode == 2
    assert "--url" in result.stderr and "PROMETHEUS_URL" in result.stderr


def test_the_demo_alarms_only_on_the_shifted_feature_and_stops_its_service(
    bento_tag: str, reproduced_project: Path, tmp_path: Path
) -> None:
    options = ("--feature", SHIFTED, "--output", tmp_path / "demo")
    output = run("pr2prod", "monitor-demo", *options, cwd=reproduced_project).stdout

    lines = {line.split(": ")[1]: line for line in output.splitlines() if line.count(": ") >= 2}
    # The held-out rows, once each with their true labels: as evaluated, to the digit.
    clean = lines["held-out rows, labelled"]
    assert "🟢 no drift (114 records; drifted: nothing; 114 labelled" in clean
    assert "live accuracy 0.965 (test 0.965)" in clean
    shifted = lines[f"{SHIFTED} shifted"]
    assert "🔴 drift" in shifted and f"drifted: {SHIFTED}" in shifted
    assert "live" not in shifted  # no label came back for the shifted traffic
    changed = lines["labels changed"]
    assert "🔴 drift (114 records; drifted: live accuracy" in changed
    assert (tmp_path / "demo" / "shifted" / "drift.md").is_file()
    assert (tmp_path / "demo" / "relabelled" / "drift.md").is_file()
    leftovers = [
        process.info["pid"]
        for process in psutil.process_iter(["pid", "cmdline"])
        if any("monitor-demo-" in part for part in process.info["cmdline"] or [])
    ]
    assert leftovers == [], "the demo left its service running"


def test_labels_that_no_longer_match_alarm_on_live_performance_alone(
    bento_tag: str,
    reproduced_project: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    schema = load_schema(reproduced_project / "schema.yaml")
    frame = load_typed(reproduced_project / "artifacts" / "split" / "train.csv", schema)
    rng = np.random.default_rng(3)
    chosen = rng.integers(0, len(frame), 300)
    records = [request_records(frame, schema)[i] for i in chosen]
    truth = frame[schema.target.name].astype(str).to_numpy()[chosen]
    # A quarter of the benign rows come back malignant: the inputs do not move at all.
    labels = [
        "malignant" if label == "benign" and rng.random() < 0.25 else label for label in truth
    ]
    monkeypatch.setenv("PR2PROD_FEEDBACK_LOG", str(tmp_path / "labels"))
    (tmp_path / "served").mkdir()
    with served_bento(bento_tag, tmp_path / "served") as url:
        send_labelled(url, records, labels)
        counted = monitor(reproduced_project, tmp_path / "counted", "--url", url)

    (version,) = counted["versions"]
    assert counted["verdict"] == "drift"
    assert [f["name"] for f in version["findings"] if f["verdict"] == "drift"] == []
    accuracy = next(f for f in version["performance"] if f["metric"] == "accuracy")
    assert accuracy["verdict"] == "drift" and accuracy["labelled"] == 300
    assert accuracy["live_value"] < accuracy["test_value"] - 0.1
    markdown = (tmp_path / "counted" / "drift.md").read_text()
    assert "Drifted: `live accuracy`" in markdown

    # The service's feedback log holds every label: the files alone give the same figures.
    from_files = monitor(reproduced_project, tmp_path / "files", "--labels", tmp_path / "labels")
    (only,) = from_files["versions"]
    assert only["model_version"] == version["model_version"]
    assert only["performance"] == version["performance"]


def test_alert_rules_for_the_built_model_pass_promtool(
    bento_tag: str, reproduced_project: Path, tmp_path: Path
) -> None:
    rules_file = tmp_path / "pr2prod-rules.yaml"
    options = ("--selector", 'job="pr2prod"', "--window", "1h", "--output", rules_file)
    run("pr2prod", "alert-rules", *options, cwd=reproduced_project)

    promtool = system_program("promtool", "install it with `apt-get install -y prometheus`")
    checked = subprocess.run(
        [promtool, "check", "rules", str(rules_file)], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rules = [
        rule
        for group in yaml.safe_load(rules_file.read_text())["groups"]
        for rule in group["rules"]
    ]
    thresholds = {
        rule["labels"]["feature"]
        for rule in rules
        if rule.get("record") == "pr2prod:drift_threshold"
    }
    schema = load_schema(reproduced_project / "schema.yaml")
    assert thresholds == {feature.name for feature in schema.features} | {"__predicted_class__"}
