"""The sweep's table: each run against the base revision, with intervals, gate and best run.

Every figure comes from the same code as the pull-request report: the gated metrics'
paired bootstrap intervals (pr2prod.report.bootstrap) and the gate's rules
(pr2prod.report.gate). Each run's per-row predictions are read from its experiment commit,
the base's from the base revision, as the report reads them. Runs are listed in the
sweep's order and the bootstrap is seeded: the same sweep always gives the same table.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

from pr2prod import paths
from pr2prod.experiments.grid import Run, shown
from pr2prod.experiments.results import RunRecord, lookup
from pr2prod.model.metrics import DECIMALS, flatten_metrics
from pr2prod.report.bootstrap import DeltaIntervals, Predictions, delta_intervals
from pr2prod.report.build import recorded_test_split
from pr2prod.report.comparison import direction
from pr2prod.report.gate import RuleResult, check_gate
from pr2prod.report.revisions import commit_sha, read_at, read_output_at
from pr2prod.schema import FeatureSchema
from pr2prod.settings import Settings


@dataclass(frozen=True)
class MetricCell:
    value: float | None
    delta: float | None
    interval: tuple[float, float] | None


@dataclass(frozen=True)
class RunRow:
    name: str
    status: str  # done, failed, running, queued, not run
    params: dict[str, str]  # each swept parameter -> the value the run used
    metrics: dict[str, MetricCell] = field(default_factory=dict)
    gate_passed: bool | None = None  # None: the run has no metrics to judge
    gate_failures: list[str] = field(default_factory=list)
    why: str = ""  # a failed run: what went wrong
    log_tail: list[str] = field(default_factory=list)
    best: bool = False


@dataclass(frozen=True)
class SweepTable:
    base_revision: str | None
    base_sha: str | None
    baseline: str  # the commit the experiments ran on
    confidence: float
    interval_note: str
    best_rule: str
    metrics: list[str]  # the gated metrics, in params.yaml's order
    rows: list[RunRow]


def build_table(
    runs: list[Run],
    records: dict[str, RunRecord],
    settings: Settings,
    schema: FeatureSchema,
    base: str | None,
    baseline: str,
    failed_log: Callable[[str], list[str]],
) -> SweepTable:
    """`failed_log(name)` gives the lines at the end of a failed run's log."""
    metrics = list(settings.gate)
    base_metrics = _base_metrics(base)
    base_predictions = _predictions(base, schema) if base else None
    base_split = recorded_test_split(read_at(base, paths.DVC_LOCK)) if base else None
    rows: list[RunRow] = []
    notes: set[str] = set()
    for run in runs:
        record = records.get(run.name) or RunRecord(run.name, "not run")
        swept = {
            name: shown(lookup(record.params, name) if record.params else value)
            for name, value in run.overrides
        }
        if record.status != "done":
            why = record.error or {
                "not run": "no experiment of this name on this commit: run `make sweep`",
                "queued": "still queued",
                "running": "still running",
            }.get(record.status, "")
            tail = failed_log(run.name) if record.status == "failed" else []
            rows.append(RunRow(run.name, record.status, swept, why=why, log_tail=tail))
            continue
        intervals = _intervals(base_predictions, base_split, record, schema, settings)
        if intervals is not None:
            notes.add(intervals.note)
        cells = {
            name: MetricCell(
                value=record.metrics.get(name),
                delta=_delta(record.metrics.get(name), (base_metrics or {}).get(name)),
                interval=None if intervals is None else _rounded(intervals.intervals.get(name)),
            )
            for name in metrics
        }
        results = check_gate(settings.gate, record.metrics, base_metrics)
        failures = [_failure(result) for result in results if result.failed]
        rows.append(RunRow(run.name, "done", swept, cells, not failures, failures))
    rule = settings.sweep.best
    return SweepTable(
        base_revision=base,
        base_sha=commit_sha(base) if base else None,
        baseline=baseline,
        confidence=settings.report.confidence,
        interval_note="; ".join(sorted(notes)),
        best_rule=(
            f"the {'highest' if direction(rule.metric, settings.gate) is not False else 'lowest'}"
            f" {rule.metric}" + (" among the runs that pass the gate" if rule.require_gate else "")
        ),
        metrics=metrics,
        rows=_mark_best(rows, settings, records),
    )


def _intervals(
    base: Predictions | None,
    base_split: str | None,
    record: RunRecord,
    schema: FeatureSchema,
    settings: Settings,
) -> DeltaIntervals | None:
    """The run's metric changes against the base, bootstrapped as the PR report does."""
    head = None if base is None else _predictions(record.rev, schema)
    if base is None or head is None:
        return None
    run_split = recorded_test_split(read_at(record.rev, paths.DVC_LOCK))
    return delta_intervals(
        base,
        head,
        resamples=settings.report.bootstrap_resamples,
        confidence=settings.report.confidence,
        seed=settings.seed,
        same_test_split=None if None in (base_split, run_split) else base_split == run_split,
    )


def _mark_best(
    rows: list[RunRow], settings: Settings, records: dict[str, RunRecord]
) -> list[RunRow]:
    """The rows with the best run marked: the first in sweep order among equals."""
    rule = settings.sweep.best
    higher = direction(rule.metric, settings.gate) is not False
    best: tuple[float, str] | None = None
    for row in rows:
        value = records[row.name].metrics.get(rule.metric) if row.status == "done" else None
        if value is None or (rule.require_gate and not row.gate_passed):
            continue
        if best is None or (value > best[0] if higher else value < best[0]):
            best = (value, row.name)
    if best is None:
        return rows
    return [
        RunRow(**{**row.__dict__, "best": True}) if row.name == best[1] else row for row in rows
    ]


def _base_metrics(base: str | None) -> dict[str, float] | None:
    text = read_at(base, paths.METRICS) if base else None
    figures = flatten_metrics(json.loads(text)) if text and text.strip() else {}
    return figures or None


def _predictions(revision: str | None, schema: FeatureSchema) -> Predictions | None:
    text = read_output_at(revision, paths.PREDICTIONS)
    target = schema.target
    return (
        None
        if text is None
        else Predictions.from_csv(text, target.positive_class, target.is_numeric)
    )


def _delta(value: float | None, base: float | None) -> float | None:
    return None if value is None or base is None else round(value - base, DECIMALS)


def _rounded(interval: tuple[float, float] | None) -> tuple[float, float] | None:
    """An interval to the metrics' own precision: float noise would only blur the table."""
    return (
        None if interval is None else (round(interval[0], DECIMALS), round(interval[1], DECIMALS))
    )


def _failure(result: RuleResult) -> str:
    return f"{result.metric} {result.check} (found {result.value})"
