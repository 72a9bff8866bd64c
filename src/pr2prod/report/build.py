"""Assemble the report: every section, computed from the workspace and a base revision."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from pr2prod import environment, paths
from pr2prod.errors import Pr2prodError
from pr2prod.model.metrics import flatten_metrics
from pr2prod.report.bootstrap import DeltaIntervals, Predictions, delta_intervals
from pr2prod.report.comparison import MetricRow, compare_metrics
from pr2prod.report.data_section import DataSection, describe_data
from pr2prod.report.gate import (
    REPRODUCE_AND_COMMIT,
    REPRODUCTION,
    RuleResult,
    check_gate,
    check_reproduction,
)
from pr2prod.report.params_diff import ParamChange, diff_params
from pr2prod.report.plots import (
    confusion_matrix,
    confusion_plot,
    curve_plot,
    predicted_vs_actual_plot,
    residuals_plot,
)
from pr2prod.report.reproducibility import Reproducibility, check_reproducibility
from pr2prod.report.revisions import commit_sha, head_sha, read_at, read_output_at
from pr2prod.schema import FeatureSchema, Target, load_schema, parse_schema
from pr2prod.settings import DataSettings, Settings, load_settings, parse_section


@dataclass(frozen=True)
class Verdict:
    passed: bool
    reason: str


@dataclass(frozen=True)
class Report:
    verdict: Verdict
    base_revision: str | None
    base_sha: str | None
    head_sha: str | None
    run_url: str | None
    notes: list[str]
    metrics: list[MetricRow]
    interval_note: str
    confidence: float
    gate: list[RuleResult]
    params: list[ParamChange]
    data: DataSection
    plots: dict[str, str]
    confusion: dict[str, dict[str, dict[str, int]]]
    reproducibility: Reproducibility
    classes: list[str] = field(default_factory=list)


def build_report(base: str | None, out_dir: Path) -> Report:
    params, schema = load_settings(), load_schema(paths.SCHEMA)
    base_sha = commit_sha(base) if base else None
    notes: list[str] = []
    data = describe_data(
        base, params.data.file, _base_data_file(base), schema, params.report.drift_threshold
    )
    reproducibility = check_reproducibility(paths.REPRO_RECORD)
    validation_failed = data.validation_passed is False

    head_metrics = None if validation_failed else _head_metrics()
    base_metrics = _base_metrics(base, notes) if base else None
    if base is None:
        notes.append("No base revision to compare with: showing this revision alone.")
    base_schema, incomparable = _base_schema(base, schema, notes) if base else (None, None)

    rows: list[MetricRow] = []
    gate: list[RuleResult] = []
    interval_note = ""
    plots: dict[str, str] = {}
    confusion: dict[str, dict[str, dict[str, int]]] = {}
    if head_metrics is not None:
        intervals = (
            _intervals(base, base_schema, schema, params, notes)
            if base_metrics and not incomparable
            else None
        )
        interval_note = intervals.note if intervals else ""
        rows = compare_metrics(
            base_metrics, head_metrics, params.gate, intervals, comparable=not incomparable
        )
        gate = [
            *check_gate(params.gate, head_metrics, base_metrics, incomparable),
            check_reproduction(reproducibility),
        ]
        plots, confusion = _plots(base, schema, out_dir)
    else:
        notes.append(
            "Metrics are not compared: the data failed validation, so the pipeline stopped "
            "before training."
        )

    return Report(
        verdict=judge(validation_failed, data, gate, reproducibility),
        base_revision=base,
        base_sha=base_sha,
        head_sha=environment.PR2PROD_HEAD_SHA.value() or head_sha(),
        run_url=_run_url(),
        notes=notes,
        metrics=rows,
        interval_note=interval_note,
        confidence=params.report.confidence,
        gate=gate,
        params=diff_params(read_at(base, paths.PARAMS) if base else None, paths.PARAMS.read_text()),
        data=data,
        plots=plots,
        confusion=confusion,
        reproducibility=reproducibility,
        classes=list(schema.target.classes),
    )


def _head_metrics() -> dict[str, float]:
    text = read_at(None, paths.METRICS)
    figures = flatten_metrics(json.loads(text)) if text and text.strip() else {}
    if not figures:
        raise Pr2prodError(
            f"{paths.METRICS} is missing or has no metrics",
            hint="reproduce the pipeline first: `make repro`",
        )
    return figures


def _base_metrics(base: str, notes: list[str]) -> dict[str, float] | None:
    text = read_at(base, paths.METRICS)
    figures = flatten_metrics(json.loads(text)) if text and text.strip() else {}
    if not figures:
        notes.append(
            f"The base revision ({base}) has no metrics in {paths.METRICS}, e.g. the first "
            "pipeline run of a new fork: no deltas, and regression rules are skipped."
        )
        return None
    return figures


def _base_schema(
    base: str, schema: FeatureSchema, notes: list[str]
) -> tuple[FeatureSchema | None, str | None]:
    """The base's schema, and why its metrics are not comparable with this revision's (if so)."""
    text = read_at(base, paths.SCHEMA)
    if text is None:
        return None, None
    try:
        base_schema = parse_schema(text, Path(f"{base}:{paths.SCHEMA}"))
    except Pr2prodError as error:
        notes.append(f"The base schema cannot be read ({error}): it is not compared.")
        return None, "the base's schema.yaml cannot be read, so its target is unknown"
    added = [name for name in schema.feature_names if name not in base_schema.feature_names]
    removed = [name for name in base_schema.feature_names if name not in schema.feature_names]
    changes = [f"added {', '.join(added)}"] if added else []
    changes += [f"removed {', '.join(removed)}"] if removed else []
    incomparable = target_change(base_schema.target, schema.target)
    if incomparable:
        changes.append(incomparable)
    if changes:
        notes.append(f"The feature schema changed: {'; '.join(changes)}.")
    if incomparable:
        notes.append(
            f"The task changed ({incomparable}): base and PR metrics are shown side by side "
            "but not compared, and gate rules relative to the base do not apply; only the "
            "absolute limits decide."
        )
    return base_schema, incomparable


def target_change(base: Target, head: Target) -> str | None:
    """Why metrics of a model for `base` do not compare with one for `head` (None: they do)."""
    if base == head:
        return None
    return f"the target changed: {base.describe()} -> {head.describe()}"


def _intervals(
    base: str | None,
    base_schema: FeatureSchema | None,
    schema: FeatureSchema,
    params: Settings,
    notes: list[str],
) -> DeltaIntervals | None:
    base_text = read_output_at(base, paths.PREDICTIONS)
    head_text = read_output_at(None, paths.PREDICTIONS)
    if base_text is None or head_text is None or base_schema is None:
        notes.append("Confidence intervals unavailable: the base has no per-row predictions.")
        return None
    base_split, head_split = (
        recorded_test_split(read_at(revision, paths.DVC_LOCK)) for revision in (base, None)
    )
    numeric = schema.target.is_numeric
    return delta_intervals(
        Predictions.from_csv(base_text, base_schema.target.positive_class, numeric),
        Predictions.from_csv(head_text, schema.target.positive_class, numeric),
        resamples=params.report.bootstrap_resamples,
        confidence=params.report.confidence,
        seed=params.seed,
        same_test_split=None if None in (base_split, head_split) else base_split == head_split,
    )


def recorded_test_split(lock_text: str | None) -> str | None:
    """The hash dvc.lock records for the test split file (None when it records none)."""
    try:
        lock = yaml.safe_load(lock_text or "") or {}
        outs = lock["stages"]["prepare"]["outs"]
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    for out in outs:
        if isinstance(out, dict) and out.get("path") == paths.TEST_SPLIT.as_posix():
            return out.get("md5")
    return None


def _plots(
    base: str | None, schema: FeatureSchema, out_dir: Path
) -> tuple[dict[str, str], dict[str, dict[str, dict[str, int]]]]:
    def both(path: Path) -> dict[str, str | None]:
        return {
            "base": read_output_at(base, path) if base else None,
            "PR": read_output_at(None, path),
        }

    plot_dir = out_dir / "plots"
    if schema.target.is_numeric:
        residuals = both(paths.RESIDUALS)
        files = {
            "Predicted vs actual": predicted_vs_actual_plot(residuals, plot_dir / "predicted.png"),
            "Residuals": residuals_plot(residuals, plot_dir / "residuals.png"),
        }
        return {name: path.relative_to(out_dir).as_posix() for name, path in files.items()}, {}
    classes = list(schema.target.classes)
    matrices = {}
    for name, text in both(paths.PREDICTIONS).items():
        try:
            matrices[name] = confusion_matrix(text, classes) if text else None
        except KeyError:
            matrices[name] = None  # an older predictions file without the expected columns
    files = {
        "ROC": curve_plot(
            both(paths.ROC_CURVE),
            "fpr",
            "tpr",
            "ROC",
            ("false positive rate", "true positive rate"),
            plot_dir / "roc.png",
        ),
        "Precision-recall": curve_plot(
            both(paths.PR_CURVE),
            "recall",
            "precision",
            "Precision-recall",
            ("recall", "precision"),
            plot_dir / "precision_recall.png",
        ),
        "Confusion matrices": confusion_plot(matrices, plot_dir / "confusion.png"),
    }
    tables = {
        name: {str(a): {str(p): int(v) for p, v in row.items()} for a, row in m.iterrows()}
        for name, m in matrices.items()
        if m is not None
    }
    return {name: path.relative_to(out_dir).as_posix() for name, path in files.items()}, tables


def _base_data_file(base: str | None) -> Path | None:
    """The base revision's data file, or None when its params.yaml does not name one.

    Only the data section is read: the base's other settings were written for its own code.
    """
    text = read_at(base, paths.PARAMS) if base else None
    if text is None:
        return None
    try:
        return parse_section(text, DataSettings, where=f"{base}:{paths.PARAMS}").file
    except Pr2prodError:
        return None


def judge(
    validation_failed: bool,
    data: DataSection,
    gate: list[RuleResult],
    reproducibility: Reproducibility,
) -> Verdict:
    """The report's verdict: the first reason it fails, or that every rule passes."""
    if validation_failed:
        broken = len(data.validation_failures)
        return Verdict(False, f"the data failed validation ({broken} rule(s) broken)")
    if reproducibility.exit_status not in (None, 0):
        return Verdict(False, f"`dvc repro` failed (exit {reproducibility.exit_status})")
    failed = [rule for rule in gate if rule.failed]
    if failed:
        detail = "; ".join(f"{r.metric} {r.check} (found {r.value})" for r in failed)
        reason = f"{len(failed)} of {len(gate)} gate rule(s) failed: {detail}"
        if any(rule.metric == REPRODUCTION for rule in failed):
            reason += (
                f". The commit does not hold its own pipeline's results: {REPRODUCE_AND_COMMIT}"
            )
        return Verdict(False, reason)
    if not any(rule.metric != REPRODUCTION for rule in gate):
        return Verdict(True, "no gate rules are configured in params.yaml")
    deciding = [rule for rule in gate if rule.passed is not None]
    if len(deciding) < len(gate):
        skipped = len(gate) - len(deciding)
        return Verdict(
            True, f"all {len(deciding)} applicable gate rules pass ({skipped} not applicable)"
        )
    return Verdict(True, f"all {len(gate)} gate rules pass")


def _run_url() -> str | None:
    repository, run = environment.GITHUB_REPOSITORY.value(), environment.GITHUB_RUN_ID.value()
    if repository and run:
        return f"{environment.GITHUB_SERVER_URL.value()}/{repository}/actions/runs/{run}"
    return None
