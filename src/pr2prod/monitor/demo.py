"""`make monitor-demo`: drift monitoring end to end on this machine, in about a minute.

It serves the bento (its own BentoML home, a free port) and runs the monitor on three
stretches of traffic, each judged alone:

1. unshifted traffic whose true labels come back (POST /feedback): no alarm;
2. traffic with one feature shifted: an alarm naming the feature;
3. unshifted traffic again, but a share of the labels that come back are another class
   (what the model learnt no longer holds): an alarm on live performance alone.

Then it prints where the reports are and stops the service. Traffic is drawn from the
training split, the very rows the reference summarises, with their true labels; the shift
moves one numeric feature by 0.7 of its standard deviation, kept inside schema.yaml's
bounds so the service accepts every record. The first stretch alone is `make run`'s last
check (`labelled_check`), on the version its rehearsal deployed.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import httpx
import numpy as np

from pr2prod import environment, paths
from pr2prod.data.records import request_records
from pr2prod.data.validation import load_typed
from pr2prod.deploy.local import export_bento
from pr2prod.errors import Pr2prodError
from pr2prod.monitor.live import LiveCounts, from_service
from pr2prod.monitor.references import stored_reference
from pr2prod.monitor.report import DriftReport, drift_report, write_report
from pr2prod.ports import free_port
from pr2prod.processes import stop_process
from pr2prod.readiness import Watched, wait_until_ready
from pr2prod.schema import FeatureSchema
from pr2prod.settings import MonitorSettings, Settings

RECORDS_PER_PHASE = 400
RECORDS_PER_REQUEST = 20
SHIFT_SDS = 0.7
# Labels sent back as another class in the third stretch: the model's live accuracy falls
# by a fifth or more of the rows, far past the gate's allowed regression, inputs unchanged.
RELABELLED_SHARE = 0.3
READY_TIMEOUT_S = 120.0


@dataclass(frozen=True)
class DemoResult:
    clean: DriftReport
    shifted: DriftReport
    relabelled: DriftReport | None  # None for a numeric target: no classes to change
    feature: str
    reports: Path


@dataclass(frozen=True)
class LabelledRows:
    """A split's rows as request records, with each row's true target."""

    records: list[dict]
    labels: list[str]

    @classmethod
    def of_split(cls, split: Path, schema: FeatureSchema) -> LabelledRows:
        frame = load_typed(split, schema)
        labels = frame[schema.target.name].astype(str).tolist()
        return cls(request_records(frame, schema), labels)

    def drawn(self, count: int, rng: np.random.Generator) -> LabelledRows:
        chosen = rng.integers(0, len(self.records), count)
        records = [dict(self.records[i]) for i in chosen]
        return LabelledRows(records, [self.labels[i] for i in chosen])

    def relabelled(self, share: float, classes: list[str], rng: np.random.Generator) -> list[str]:
        """The labels, a `share` of them changed to the next class."""
        changed = rng.random(len(self.labels)) < share
        return [
            classes[(classes.index(label) + 1) % len(classes)] if change else label
            for label, change in zip(self.labels, changed, strict=True)
        ]


def run_demo(
    bento_tag: str, schema: FeatureSchema, settings: Settings, out: Path, feature: str
) -> DemoResult:
    if feature not in schema.numeric_features:
        raise Pr2prodError(
            f"{feature!r} is not a numeric feature of schema.yaml",
            hint=f"pick one of {schema.numeric_features}",
        )
    training = LabelledRows.of_split(paths.TRAIN_SPLIT, schema)
    held_out = LabelledRows.of_split(paths.TEST_SPLIT, schema)
    rng = np.random.default_rng(0)
    with demo_service(bento_tag, out) as url:
        clean = held_out_check(url, held_out, schema, settings, out / "clean")
        before = from_service(url)
        send(url, shift(training.drawn(RECORDS_PER_PHASE, rng).records, schema, feature))
        shifted_only = since(from_service(url), before)
        shifted = judge(shifted_only, f"traffic with {feature} shifted", settings, out / "shifted")
        if schema.target.is_numeric:
            return DemoResult(clean, shifted, None, feature, out)
        labels = held_out.relabelled(RELABELLED_SHARE, list(schema.target.classes), rng)
        relabelled = held_out_check(
            url, held_out, schema, settings, out / "relabelled", labels, RELABELLED_SHARE
        )
    return DemoResult(clean, shifted, relabelled, feature, out)


def held_out_check(
    url: str,
    rows: LabelledRows,
    schema: FeatureSchema,
    settings: Settings,
    out: Path,
    labels: list[str] | None = None,
    relabelled: float = 0.0,
) -> DriftReport:
    """The held-out rows sent once each to the service at `url`, each prediction's true
    label (or value) sent back (`labels`, else the rows' own), and the monitor's report on
    them alone (what the service counted before is left out).

    New rows, as live traffic is: the training rows would be judged against predictions
    the model made on rows it never saw, and look more certain than them. Each row is sent
    once, so `monitor.min_rows` is lowered to their number: the tests hold their false-alarm
    rate at any size, and a small sample only catches large drifts.
    """
    before = from_service(url)
    send(url, rows.records, labels or rows.labels)
    changed = f", {relabelled:.0%} of them changed to another class" if relabelled else ""
    what = f"the {len(rows.records)} held-out rows, sent once each, their true labels sent back"
    what += changed
    monitor = replace(settings.monitor, min_rows=min(settings.monitor.min_rows, len(rows.records)))
    return judge(since(from_service(url), before), what, settings, out, monitor)


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


def send(url: str, records: list[dict], labels: list[str] | None = None) -> None:
    """Each record predicted; with `labels`, each prediction's label sent back by its id."""
    with httpx.Client(base_url=url, timeout=60) as client:
        for start in range(0, len(records), RECORDS_PER_REQUEST):
            batch = records[start : start + RECORDS_PER_REQUEST]
            answers = client.post("/predict", json={"records": batch})
            answers.raise_for_status()
            if labels is None:
                continue
            truth = labels[start : start + RECORDS_PER_REQUEST]
            feedback = [
                {"prediction_id": answer["prediction_id"], "label": label}
                for answer, label in zip(answers.json(), truth, strict=True)
            ]
            client.post("/feedback", json={"feedback": feedback}).raise_for_status()


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
            error_sums={k: n - then.error_sums.get(k, 0.0) for k, n in now.error_sums.items()},
        )
    return result


def judge(
    live: dict[str, LiveCounts],
    what: str,
    settings: Settings,
    out: Path,
    monitor: MonitorSettings | None = None,
) -> DriftReport:
    report = drift_report(
        live,
        what,
        monitor or settings.monitor,
        stored_reference,
        settings.gate,
        settings.report.bootstrap_resamples,
    )
    write_report(report, out)
    return report
