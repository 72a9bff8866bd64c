"""A real Prometheus scraping the served bento gives the same figures as the bento itself.

The test runs its own `prometheus` (Debian's package: /usr/bin/prometheus) with its own
configuration, storage and port, scraping every second, and stops it by its PID.
"""

from __future__ import annotations

import json
import math
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from conftest import REPO_ROOT, Server, free_port, start_server, stop_server, system_program

from pr2prod.data.records import split_records
from pr2prod.deploy.observations import (
    PrometheusSource,
    Snapshot,
    VersionUnreachable,
    Window,
    histogram_quantile,
    scrape,
)
from pr2prod.schema import load_schema

pytestmark = pytest.mark.integration

DOWN_RELEASE = "nobody-listens"  # a second target, on a port where nothing answers
CATCH_UP_SECONDS = 30.0
EXAMPLE = json.loads((REPO_ROOT / "docs" / "examples" / "request.json").read_text())


@dataclass(frozen=True)
class Prometheus:
    url: str
    log: Path


@pytest.fixture(scope="module")
def prometheus(
    served_bento: Server, bento_tag: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Prometheus]:
    """Our own Prometheus, scraping the served bento (and a dead address) every second."""
    binary = system_program("prometheus", "install it with `apt-get install -y prometheus`")
    workdir = tmp_path_factory.mktemp("prometheus")
    bento_address = urlsplit(served_bento.url).netloc
    targets = [
        {"targets": [bento_address], "labels": {"release": bento_tag}},
        {"targets": [f"127.0.0.1:{free_port()}"], "labels": {"release": DOWN_RELEASE}},
    ]
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [{"job_name": "pr2prod", "static_configs": targets}],
    }
    (workdir / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = workdir / "prometheus.log"
    command = [
        binary,
        f"--config.file={workdir / 'prometheus.yml'}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
    ]
    process, url = start_server(command, workdir, log, port, timeout=30, path="/-/ready")
    try:
        yield Prometheus(url, log)
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def source(prometheus: Prometheus) -> PrometheusSource:
    return PrometheusSource(prometheus.url, lambda release: f'release="{release}"')


def caught_up(source: PrometheusSource, release: str, version_url: str) -> Snapshot:
    """Prometheus's snapshot once it equals the version's own /metrics.

    Nothing else sends /predict to the served bento while a test runs, so the two agree
    as soon as Prometheus has scraped after the last request.
    """
    deadline = time.monotonic() + CATCH_UP_SECONDS
    seen: Snapshot | str = "nothing yet"
    while time.monotonic() < deadline:
        direct = scrape(version_url)
        try:
            seen = source.snapshot(release)
        except VersionUnreachable as error:  # not scraped yet
            seen = str(error)
        if seen == direct:
            return seen
        time.sleep(0.25)
    pytest.fail(f"Prometheus did not catch up with {version_url} in {CATCH_UP_SECONDS} s: {seen}")


def post(url: str, body: dict) -> httpx.Response:
    return httpx.post(f"{url}/predict", json=body, timeout=30)


def test_prometheus_gives_the_versions_own_figures(
    served_bento: Server, bento_tag: str, source: PrometheusSource, reproduced_project: Path
) -> None:
    schema = load_schema(reproduced_project / "schema.yaml")
    records = split_records(reproduced_project / "artifacts" / "split" / "test.csv", schema)
    before = caught_up(source, bento_tag, served_bento.url)

    statuses: Counter[str] = Counter()
    predicted: Counter[str] = Counter()
    for start in range(0, 40, 2):  # 20 requests of 2 records each
        response = post(served_bento.url, {"records": records[start : start + 2]})
        statuses[str(response.status_code)] += 1
        predicted.update(answer["predicted"] for answer in response.json())
    for _ in range(3):  # invalid: a record without its fields
        statuses[str(post(served_bento.url, {"records": [{}]}).status_code)] += 1
    after = caught_up(source, bento_tag, served_bento.url)

    window = Window.between(before, after)
    assert nonzero(window.counts.requests_by_status) == {"200": 20.0, "400": 3.0}
    assert dict(statuses) == {"200": 20, "400": 3}
    assert (window.requests, window.errors, window.error_rate) == (23.0, 0.0, 0.0)
    assert window.counts.latency_buckets[math.inf] == 23.0
    assert nonzero(window.counts.predicted) == {name: float(n) for name, n in predicted.items()}
    assert {
        name: buckets[math.inf] for name, buckets in window.counts.probability_buckets.items()
    } == {
        "malignant": 40.0,
        "benign": 40.0,
    }


def test_our_p99_is_prometheus_histogram_quantile(
    served_bento: Server, bento_tag: str, source: PrometheusSource
) -> None:
    for _ in range(5):
        assert post(served_bento.url, EXAMPLE).status_code == 200
    snapshot = caught_up(source, bento_tag, served_bento.url)
    promql = (
        "histogram_quantile(0.99, sum by (le) (bentoml_service_request_duration_seconds_bucket"
        f'{{endpoint="/predict",release="{bento_tag}"}}))'
    )

    (result,) = source.query(promql)

    ours = histogram_quantile(0.99, snapshot.latency_buckets)
    assert ours == pytest.approx(float(result["value"][1]), rel=1e-9)


def test_a_version_prometheus_cannot_scrape_is_unreachable(source: PrometheusSource) -> None:
    deadline = time.monotonic() + CATCH_UP_SECONDS
    while True:  # until Prometheus has tried the dead target once
        with pytest.raises(VersionUnreachable) as raised:
            source.snapshot(DOWN_RELEASE)
        if "up == 0" in str(raised.value) or time.monotonic() > deadline:
            break
        time.sleep(0.25)
    assert "up == 0" in str(raised.value)
    with pytest.raises(VersionUnreachable, match="no target"):
        source.snapshot("never-deployed")


def nonzero(counts: dict[str, float]) -> dict[str, float]:
    """Series BentoML creates up front (a 500 count of 0) say nothing about the window."""
    return {key: value for key, value in counts.items() if value}
