"""The report as markdown (the PR comment and job summary) and as JSON (for machines)."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from pr2prod.report.build import Report
from pr2prod.report.comparison import MetricRow
from pr2prod.report.gate import REPRODUCE_AND_COMMIT

# Hidden in the rendered comment; lets a bot find and update the same comment.
MARKER = "<!-- pr2prod-report -->"
NONE = "n/a"  # a figure that one side does not have


def to_json(report: Report) -> str:
    body: dict[str, Any] = dataclasses.asdict(report)
    body["metrics"] = [
        {
            **dataclasses.asdict(row),
            "delta": row.delta,
            "change": row.change,
            "within_noise": row.within_noise,
        }
        for row in report.metrics
    ]
    body["reproducibility"]["matches"] = report.reproducibility.matches
    return json.dumps(body, indent=2, default=str) + "\n"


def to_markdown(report: Report) -> str:
    sections = [
        MARKER,
        _verdict(report),
        *[f"> {note}" for note in report.notes],
        _metrics(report),
        _gate(report),
        _params(report),
        _data(report),
        _plots(report),
        _reproducibility(report),
        _footer(report),
    ]
    return "\n\n".join(section for section in sections if section) + "\n"


def _verdict(report: Report) -> str:
    icon, word = ("✅", "passes") if report.verdict.passed else ("❌", "fails")
    if not report.base_revision:
        compared = "No base revision to compare with."
    elif report.base_revision == report.base_sha:
        # CI names the base by its commit (the event's base sha): one short form is enough.
        compared = f"Compared with the base commit `{_sha(report.base_sha)}`."
    else:
        compared = f"Compared with `{report.base_revision}` ({_sha(report.base_sha)})."
    return f"## {icon} pr2prod: the quality gate {word}: {report.verdict.reason}\n\n{compared}"


def _metrics(report: Report) -> str:
    if not report.metrics:
        return ""
    confidence = f"{report.confidence:.0%}"
    overall = [row for row in report.metrics if not row.name.startswith("per_class.")]
    per_class = [row for row in report.metrics if row.name.startswith("per_class.")]
    header = (
        f"| metric | base | PR | change | {confidence} interval of the change | |\n"
        "|---|--:|--:|--:|:-:|---|"
    )
    lines = ["### Metrics", "", header, *map(_metric_line, overall)]
    if report.interval_note:
        lines += [
            "",
            f"_Intervals: {report.interval_note}. A change whose interval includes "
            "zero is within noise._",
        ]
    if per_class:
        lines += [
            "",
            "<details><summary>Per-class figures</summary>",
            "",
            header,
            *map(_metric_line, per_class),
            "",
            "</details>",
        ]
    return "\n".join(lines)


def _metric_line(row: MetricRow) -> str:
    arrow = {"better": "🟢 better", "worse": "🔴 worse", "same": "no change"}.get(row.change, "")
    if row.within_noise and row.change in ("better", "worse"):
        arrow = f"{arrow} (within noise)"
    interval = f"[{row.interval[0]:+.4f}, {row.interval[1]:+.4f}]" if row.interval else NONE
    digits = 0 if row.higher_is_better is None else 4  # counts are whole numbers
    delta = NONE if row.delta is None else f"{row.delta:+.{digits}f}"
    name = row.name.removeprefix("per_class.")
    base, head = _number(row.base, digits), _number(row.head, digits)
    return f"| {name} | {base} | {head} | {delta} | {interval} | {arrow} |"


def _gate(report: Report) -> str:
    if not report.gate:
        return ""
    lines = ["### Quality gate", "", "| metric | rule | found | |", "|---|---|--:|:-:|"]
    lines += [f"| {r.metric} | {r.check} | {r.value} | {_mark(r.passed)} |" for r in report.gate]
    return "\n".join(lines)


def _mark(passed: bool | None) -> str:
    return {True: "✅", False: "❌", None: "n/a"}[passed]


def _params(report: Report) -> str:
    if not report.params:
        return "### Params\n\nNo params changed."
    lines = ["### Params", "", "| param | base | PR |", "|---|---|---|"]
    lines += [f"| `{c.name}` | `{c.base}` | `{c.head}` |" for c in report.params]
    return "\n".join(lines)


def _data(report: Report) -> str:
    data = report.data
    lines = ["### Data", ""]
    if data.validation_passed is False:
        lines += [
            "**Validation failed.**",
            "",
            "| column | rule | rows | examples |",
            "|---|---|--:|---|",
        ]
        lines += [
            f"| {f.get('column') or '(table)'} | `{f['rule']}` | {f['rows']} | "
            f"{', '.join(f.get('examples') or []) or f.get('detail', '')} |"
            for f in data.validation_failures
        ]
        lines.append("")
    if not data.changed:
        rows = f", {data.head_rows} rows" if data.head_rows is not None else ""
        lines.append(f"Data unchanged (md5 `{_sha(data.head_hash)}`{rows}).")
        return "\n".join(lines)
    validation = {True: "passed", False: "failed", None: "not run"}[data.validation_passed]
    lines.append(
        f"Data changed: md5 `{_sha(data.base_hash)}` -> `{_sha(data.head_hash)}`, "
        f"rows {_number(data.base_rows, 0)} -> {_number(data.head_rows, 0)}, "
        f"validation {validation}."
    )
    if data.note:
        lines += ["", f"_{data.note}_"]
    if data.labels:
        lines += ["", "| label | base share | PR share |", "|---|--:|--:|"]
        lines += [
            f"| {label} | {_share(before)} | {_share(after)} |"
            for label, (before, after) in sorted(data.labels.items())
        ]
    if data.drift:
        flagged = [drift for drift in data.drift if drift.flagged]
        lines += [
            "",
            f"Feature drift (PSI): {len(flagged)} feature(s) over the threshold.",
            "",
            "| feature | PSI | shift | |",
            "|---|--:|---|:-:|",
        ]
        lines += [
            f"| {d.feature} | {d.psi:.3f} | {d.summary} | {'⚠️' if d.flagged else ''} |"
            for d in data.drift[:15]
        ]
    return "\n".join(lines)


def _plots(report: Report) -> str:
    if not report.plots:
        return ""
    images = " ".join(f"![{name}]({path})" for name, path in report.plots.items())
    lines = ["### Plots", "", "Base dashed grey, PR solid blue.", "", images]
    if report.confusion:
        lines += [
            "",
            "Confusion matrix (rows: actual, columns: predicted; PR, base in brackets):",
            "",
            _confusion_table(report),
        ]
    return "\n".join(lines)


def _confusion_table(report: Report) -> str:
    head = report.confusion.get("PR", {})
    base = report.confusion.get("base")
    classes = report.classes
    lines = [
        "| actual \\ predicted | " + " | ".join(classes) + " |",
        "|---|" + "--:|" * len(classes),
    ]
    for actual in classes:
        cells = []
        for predicted in classes:
            cell = str(head.get(actual, {}).get(predicted, 0))
            if base is not None:
                cell += f" ({base.get(actual, {}).get(predicted, 0)})"
            cells.append(cell)
        lines.append(f"| **{actual}** | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _reproducibility(report: Report) -> str:
    repro = report.reproducibility
    lines = ["### Reproducibility", ""]
    if repro.stages_run is None:
        lines.append("Stages re-run: not recorded (run the pipeline with `make repro`).")
    else:
        ran = ", ".join(repro.stages_run) or "none (everything was up to date)"
        lines.append(f"Stages re-run: {ran} in {repro.seconds:g} s.")
    if repro.matches:
        lines.append("The committed dvc.lock and metrics match what was reproduced.")
        return "\n".join(lines)
    if not repro.committed:
        lines.append("**The commit has no dvc.lock**: nothing to check the reproduction against.")
    else:
        lines.append("**The committed results differ from what was reproduced:**")
        lines += [f"- {difference}" for difference in repro.lock_differences]
        lines += [f"- {difference}" for difference in repro.metric_differences]
    lines.append(
        "\nThis fails the gate: main reproduces the pipeline before it releases, and would "
        f"refuse these results. To fix it, {REPRODUCE_AND_COMMIT} (if the base branch moved "
        "on, merge it into this branch first)."
    )
    return "\n".join(lines)


def _footer(report: Report) -> str:
    parts = [f"base `{_sha(report.base_sha)}`", f"head `{_sha(report.head_sha)}`"]
    if report.run_url:
        parts.append(f"[workflow run]({report.run_url})")
    return "---\n<sub>" + " · ".join(parts) + "</sub>"


def _sha(value: str | None) -> str:
    return value[:8] if value else "none"


def _number(value: float | None, digits: int = 4) -> str:
    if value is None:
        return NONE
    return f"{value:.{digits}f}" if digits else f"{value:.0f}"


def _share(value: float | None) -> str:
    return NONE if value is None else f"{value:.1%}"
