"""`make monitor-demo`: drift monitoring end to end on this machine, in about a minute.

It serves the bento (its own BentoML home, a free port), sends unshifted traffic and runs
the monitor (no alarm), then sends traffic with one feature shifted and runs it again on
that traffic alone (an alarm naming the feature), prints where the reports are and stops
the service. Unshifted traffic is drawn from the training split, the very rows the
reference summarises; the shift moves one numeric feature by 0.7 of its standard
deviation, kept inside schema.yaml's bounds so the service accepts every record.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from pr2prod import environment, paths
from pr2prod.data.records import split_records
from pr2prod.deploy.local import export_bento
from pr2prod.errors import Pr2prodError
from pr2prod.monitor.live import LiveCounts, from_service
from pr2prod.monitor.references import stored_reference
from pr2prod.monitor.report import DriftReport, drift_report, write_report
from pr2prod.ports import free_port
from pr2prod.processes import stop_process
from pr2prod.readiness import Watched, wait_until_ready
from pr2prod.schema import FeatureSchema
from pr2prod.settings import MonitorSettings

RECORDS_PER_PHASE = 400
RECORDS_PER_REQUEST = 20
SHIFT_SDS = 0.7
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DemoResult:
    clean: DriftReport
    shifted: DriftReport
    feature: str
    reports: Path


def run_demo(
    bento_tag: str, schema: FeatureSchema, settings: MonitorSettings, out: Path, feature: str
) -> DemoResult:
    if feature not in schema.numeric_features:
        raise Pr2prodError(
            f"{feature!r} is not a numeric feature of schema.yaml",
            hint=f"pick one of {schema.numeric_features}",
        )
    rows = split_records(paths.TRAIN_SPLIT, schema)
    rng = np.random.default_rng(0)
    with demo_service(bento_tag, out) as url:
        send(url, [rows[i] for i in rng.integers(0, len(rows), RECORDS_PER_PHASE)])
        before_shift = from_service(url)
        clean = judge(before_shift, "the unshifted traffic", settings, out / "clean")
        drawn = [dict(rows[i]) for i in rng.integers(0, len(rows), RECORDS_PER_PHASE)]
        send(url, shift(drawn, schema, feature))
        shifted_only = since(from_service(url), before_shift)
        shifted = judge(shifted_only, f"traffic with {feature} shifted", settings, out / "shifted")
    return DemoResult(clean, shifted, feature, out)


@contextlib.contextmanager
def demo_service(bento_tag: str, out: Path) -> Iterator[str]:
    """The bento served from an exported copy with a BentoML home of its own (a server
    sharing one would empty another's /metrics), stopped by its PID on the way out."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="monitor-demo-") as scratch:
        folder = Path(scratch)
        store = Path(environment.BENTOML_HOME.value()).expanduser()
        export_bento(bento_tag, store, folder / "bento")
        (folder / "home").mkdir()
        port, log = free_port(), out / "service.log"
        env = {**os.environ, "BENTOML_HOME": str(folder / "home"), "BENTOML_DO_NOT_TRACK": "true"}
        command = [sys.executable, "-m", "bentoml", "serve", str(folder / "bento")]
        command += ["--host", "127.0.0.1", "--port", str(port)]
        with log.open("w") as output:
            process = subprocess.Popen(command, env=env, stdout=output, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}"
            wait_until_ready(url, READY_TIMEOUT_S, process=Watched.popen(process, log))
            yield url
        finally:
            stop_process(process)


def send(url: str, records: list[dict]) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(records), RECORDS_PER_REQUEST):
            batch = records[start : start + RECORDS_PER_REQUEST]
            client.post("/predict", json={"records": batch}).raise_for_status()


def shift(records: list[dict], schema: FeatureSchema, feature: str) -> list[dict]:
    """`feature` moved up by SHIFT_SDS of its spread here, inside the schema's bounds."""
    values = np.array([r[feature] for r in records if r[feature] is not None], dtype=float)
    bounds = next(f for f in schema.features if f.name == feature)
    high = np.inf if bounds.max is None else bounds.max
    for record in records:
        if record[feature] is not None:
            record[feature] = float(min(record[feature] + SHIFT_SDS * values.std(), high))
    return records


def since(after: dict[str, LiveCounts], before: dict[str, LiveCounts]) -> dict[str, LiveCounts]:
    """The counts of what happened between two reads of the same running service."""
    result = {}
    for version, now in after.items():
        then = before.get(version, LiveCounts())
        result[version] = LiveCounts(
            features={
                name: {b: n - then.features.get(name, {}).get(b, 0.0) for b, n in bins.items()}
                for name, bins in now.features.items()
            },
            predicted={c: n - then.predicted.get(c, 0.0) for c, n in now.predicted.items()},
            probabilities={
                label: {
                    le: n - then.probabilities.get(label, {}).get(le, 0.0) for le, n in b.items()
                }
                for label, b in now.probabilities.items()
            },
            values={le: n - then.values.get(le, 0.0) for le, n in now.values.items()},
            feedback={c: n - then.feedback.get(c, 0.0) for c, n in now.feedback.items()},
        )
    return result


def judge(
    live: dict[str, LiveCounts], what: str, settings: MonitorSettings, out: Path
) -> DriftReport:
    report = drift_report(live, what, settings, stored_reference)
    write_report(report, out)
    return report
