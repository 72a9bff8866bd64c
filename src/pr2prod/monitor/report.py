"""The drift report: markdown for people (and the alert issue), JSON for machines, one plot."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

from pr2prod.monitor.drift import (
    DRIFT,
    NO_DRIFT,
    NOT_ENOUGH_DATA,
    Finding,
    VersionDrift,
    compare,
    overall,
    traffic_shares,
)
from pr2prod.monitor.live import LiveCounts
from pr2prod.monitor.performance import (
    PerformanceFinding,
    error_findings,
    performance_findings,
)
from pr2prod.serving.reference import Reference, ValueReference
from pr2prod.settings import GateRule, MonitorSettings

MARKDOWN, JSON, PLOT = "drift.md", "drift.json", "drift.png"
MARKS = {DRIFT: "🔴 drift", NO_DRIFT: "🟢 no drift", NOT_ENOUGH_DATA: "⚪ not enough data"}


@dataclass(frozen=True)
class DriftReport:
    source: str  # where the live statistics came from, and over which range
    settings: MonitorSettings
    versions: list[VersionDrift]

    @property
    def verdict(self) -> str:
        return overall(version.verdict for version in self.versions)

    def to_json(self) -> str:
        body = {
            "verdict": self.verdict,
            "source": self.source,
            "alpha": self.settings.alpha,
            "min_rows": self.settings.min_rows,
            "versions": [
                {
                    "model_version": version.model_version,
                    "rows": version.rows,
                    "traffic_share": version.traffic_share,
                    "verdict": version.verdict,
                    "findings": [asdict(finding) for finding in version.findings],
                    "performance": [asdict(finding) for finding in version.performance],
                }
                for version in self.versions
            ],
        }
        return json.dumps(body, indent=2) + "\n"


def drift_report(
    live: Mapping[str, LiveCounts],
    source: str,
    settings: MonitorSettings,
    reference_for: Callable[[str], Reference],
    gate: Mapping[str, GateRule] | None = None,
    resamples: int = 1000,
) -> DriftReport:
    """Every model version that served a record or got feedback, compared with its
    reference; live performance is judged by the `gate` rules (none: not judged)."""
    shares = traffic_shares(live)
    versions = []
    for version, counts in sorted(live.items()):
        if counts.rows == 0 and counts.labelled == 0:
            continue
        reference = reference_for(version)
        compared = compare(reference, counts, version, shares[version], settings)
        predictions = reference.predictions
        if isinstance(predictions, ValueReference):
            performance = error_findings(
                predictions.errors, counts.error_sums, gate or {}, settings.alpha, settings.min_rows
            )
        else:
            performance = performance_findings(
                predictions,
                counts.feedback,
                gate or {},
                settings.alpha,
                settings.min_rows,
                resamples,
                seed=0,  # the same counts give the same report
            )
        versions.append(replace(compared, performance=performance))
    return DriftReport(source, settings, versions)


def version_summary(version: VersionDrift) -> str:
    """One line: the verdict, what drifted, and live performance when labels came back."""
    drifted = ", ".join(drifted_names(version)) or "nothing"
    line = f"{MARKS[version.verdict]} ({version.rows:.0f} records; drifted: {drifted}"
    if version.performance:
        first = version.performance[0]
        line += f"; {first.labelled:.0f} labelled"
        if first.live_value is not None:
            line += f", live {first.metric} {first.live_value:.3f} (test {first.test_value:.3f})"
        if first.live_interval is None:
            line += ", not enough to judge"
    return line + ")"


def drifted_names(version: VersionDrift) -> list[str]:
    """What drifted: features and prediction findings, then live metrics below the gate."""
    names = [finding.name for finding in version.drifted]
    return names + [f"live {f.metric}" for f in version.performance if f.verdict == DRIFT]


def render_markdown(report: DriftReport) -> str:
    lines = [
        f"## Drift monitor: {MARKS[report.verdict]}",
        "",
        f"Live statistics from {report.source}, compared with each model version's "
        f"reference (its training split and its test-set predictions). Chance of an alarm "
        f"on unshifted traffic: at most {report.settings.alpha:g} per version and run "
        f"(Holm's correction over every test); fewer than {report.settings.min_rows} "
        "records is not enough data.",
    ]
    if not report.versions:
        lines += ["", "No model version has served a record in this range."]
    for version in report.versions:
        lines += ["", *_version_section(version, report.settings.alpha)]
    return "\n".join(lines) + "\n"


def _version_section(version: VersionDrift, alpha: float) -> list[str]:
    drifted = ", ".join(f"`{name}`" for name in drifted_names(version)) or "none"
    lines = [
        f"### Model version `{version.model_version}`: {MARKS[version.verdict]}",
        "",
        f"{version.rows:.0f} records ({version.traffic_share:.0%} of the traffic). "
        f"Drifted: {drifted}.",
        "",
        "| | What | Test | Statistic | p-value | Holm-adjusted | Records | Traffic shifted |",
        "|---|---|---|---:|---:|---:|---:|---:|",
    ]
    ordered = sorted(version.findings, key=_severity)
    lines += [_row(finding) for finding in ordered]
    if version.performance:
        lines += ["", *_performance_section(version.performance, alpha)]
    return lines


def _performance_section(findings: list[PerformanceFinding], alpha: float) -> list[str]:
    labelled = findings[0].labelled
    lines = [
        f"Live performance on {labelled:.0f} labelled predictions against the test split, "
        "checked with the quality gate's rules: labelled and test rows bootstrapped, each "
        f"bound at {1 - alpha / len(findings):.1%} confidence (alpha {alpha:g} over "
        f"{len(findings)} metrics). Fewer labelled predictions than `monitor.min_rows` is "
        "not enough data.",
        "",
        "| | Metric | Test | Live | Live interval | Live - test, at best | Gate rule |",
        "|---|---|---:|---:|---|---:|---|",
    ]
    for finding in findings:
        mark = MARKS[finding.verdict].split()[0]
        interval = (
            "-"
            if finding.live_interval is None
            else f"{finding.live_interval[0]:.3f} to {finding.live_interval[1]:.3f}"
        )
        delta = "-" if finding.delta_bound is None else f"{finding.delta_bound:+.3f}"
        live = "-" if finding.live_value is None else f"{finding.live_value:.3f}"
        lines.append(
            f"| {mark} | {finding.metric} | {finding.test_value:.3f} | {live} | {interval} "
            f"| {delta} | {finding.rule} |"
        )
    return lines


def _severity(finding: Finding) -> tuple[int, float]:
    rank = {DRIFT: 0, NO_DRIFT: 1, NOT_ENOUGH_DATA: 2}[finding.verdict]
    return rank, finding.adjusted_p_value if finding.adjusted_p_value is not None else 1.0


def _row(finding: Finding) -> str:
    mark = MARKS[finding.verdict].split()[0]
    what = f"`{finding.name}`" if finding.kind == "feature" else finding.name
    return (
        f"| {mark} | {what} | {finding.test or '-'} | {_number(finding.statistic)} | "
        f"{_p(finding.p_value)} | {_p(finding.adjusted_p_value)} | {finding.rows:.0f} | "
        f"{finding.shifted_share:.1%} |"
    )


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.3g}"


def _p(value: float | None) -> str:
    if value is None:
        return "-"
    return "< 1e-6" if value < 1e-6 else f"{value:.2g}"


def drift_plot(report: DriftReport, out: Path) -> Path:
    """Per version: the traffic shifted per finding, and the bins of the most drifted one."""
    shown = [version for version in report.versions if version.findings] or []
    figure = Figure(figsize=(11, 1.5 + 3.2 * max(1, len(shown))), dpi=90)
    grid = figure.subplots(max(1, len(shown)), 2, squeeze=False)
    for (bars, bins), version in zip(grid, shown, strict=False):
        findings = sorted(version.findings, key=lambda finding: finding.shifted_share)
        colours = ["#d62728" if f.verdict == DRIFT else "#1f77b4" for f in findings]
        bars.barh([f.name for f in findings], [f.shifted_share for f in findings], color=colours)
        bars.set(title=f"{version.model_version}: traffic shifted", xlabel="share of records")
        bars.tick_params(axis="y", labelsize=7)
        worst = min(version.findings, key=_severity)
        _bin_shares(bins, worst)
    figure.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(out, format="png", metadata={"Software": None})
    return out


def _bin_shares(axes, finding: Finding) -> None:
    labels = list(finding.reference)
    total_ref = sum(finding.reference.values()) or 1.0
    total_live = sum(finding.live.values()) or 1.0
    positions = range(len(labels))
    axes.bar(
        [p - 0.2 for p in positions],
        [finding.reference[k] / total_ref for k in labels],
        width=0.4,
        label="reference",
        color="#888888",
    )
    axes.bar(
        [p + 0.2 for p in positions],
        [finding.live.get(k, 0.0) / total_live for k in labels],
        width=0.4,
        label="live",
        color="#d62728" if finding.verdict == DRIFT else "#1f77b4",
    )
    axes.set_xticks(list(positions), labels, rotation=45, fontsize=7)
    axes.set(title=f"{finding.name}: share per bin", ylabel="share")
    axes.legend()


def write_report(report: DriftReport, directory: Path) -> dict[str, Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = {
        "markdown": directory / MARKDOWN,
        "json": directory / JSON,
        "plot": directory / PLOT,
    }
    written["markdown"].write_text(render_markdown(report))
    written["json"].write_text(report.to_json())
    drift_plot(report, written["plot"])
    return written
