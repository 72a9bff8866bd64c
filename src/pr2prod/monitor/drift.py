"""Comparing one model version's live counts with its reference: findings and a verdict.

One finding per feature (are its values distributed as in training?) and two about the
predictions (predicted classes, and the probability histogram of one class, against the
model's own predictions on the test split; for a regressor, one: the histogram of its
predicted values against its test-set predictions', in the same buckets). All of a
version's findings form one family: Holm's correction holds the chance that any of them
alarms on unshifted traffic at `alpha`. Too few live records is "not enough data", never an alarm.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from pr2prod.monitor.detectors import (
    NotEnoughData,
    Outcome,
    combined,
    fisher_share,
    g_test,
    holm_adjusted,
    total_variation,
)
from pr2prod.monitor.live import LiveCounts
from pr2prod.serving.reference import (
    MISSING,
    UNSEEN,
    FeatureReference,
    NumericReference,
    PredictionsReference,
    Reference,
    ValueReference,
)
from pr2prod.settings import MonitorSettings

if TYPE_CHECKING:
    from pr2prod.monitor.performance import PerformanceFinding

DRIFT = "drift"
NO_DRIFT = "no drift"
NOT_ENOUGH_DATA = "not enough data"


@dataclass(frozen=True)
class Finding:
    name: str  # the feature, or what about the predictions
    kind: str  # "feature" or "prediction"
    rows: float  # live records behind it
    shifted_share: float  # share of live records that would have to change bins (0 to 1)
    test: str = ""
    statistic: float | None = None
    p_value: float | None = None  # of the test itself
    adjusted_p_value: float | None = None  # Holm-adjusted over the version's findings
    verdict: str = NOT_ENOUGH_DATA
    reference: dict[str, float] = field(default_factory=dict)  # counts per bin, for plots
    live: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class VersionDrift:
    model_version: str
    rows: float
    traffic_share: float  # of the live records of every version in the source
    findings: list[Finding]
    # Live performance on labelled predictions (concept drift), when labels came back.
    performance: list[PerformanceFinding] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return overall(f.verdict for f in [*self.findings, *self.performance])

    @property
    def drifted(self) -> list[Finding]:
        return [finding for finding in self.findings if finding.verdict == DRIFT]


def overall(verdicts: Iterable[str]) -> str:
    """Drift if anything drifted; else no drift if anything was tested; else not enough data."""
    found = set(verdicts)
    if DRIFT in found:
        return DRIFT
    return NO_DRIFT if NO_DRIFT in found else NOT_ENOUGH_DATA


def compare(
    reference: Reference,
    live: LiveCounts,
    model_version: str,
    traffic_share: float,
    settings: MonitorSettings,
) -> VersionDrift:
    # Each finding needs enough records of its own: a series the service did not export
    # (a model stored without a reference) is no data, not "no drift".
    min_rows = settings.min_rows
    findings = [
        feature_finding(name, feature, live.features.get(name, {}), min_rows)
        for name, feature in reference.features.items()
    ]
    findings += prediction_findings(reference.predictions, live, min_rows)
    return VersionDrift(
        model_version, live.rows, traffic_share, with_verdicts(findings, settings.alpha)
    )


def feature_finding(
    name: str, feature: FeatureReference, live: Mapping[str, float], min_rows: int
) -> Finding:
    finding = untested(name, "feature", feature.bins(), live)
    expected, observed = finding.reference, finding.live
    if finding.rows < min_rows:
        return finding
    numeric = isinstance(feature, NumericReference)
    present = [label for label in expected if label not in (MISSING, UNSEEN)]
    outcomes: list[Outcome] = []
    with contextlib.suppress(NotEnoughData):  # then the missing shares are all there is
        outcomes.append(
            g_test([expected[b] for b in present], [observed[b] for b in present], numeric)
        )
    for special, what in ((MISSING, "missing"), (UNSEEN, "unseen category")):
        if special in expected:
            outcomes.append(
                fisher_share(
                    expected[special],
                    sum(expected.values()),
                    observed[special],
                    finding.rows,
                    what,
                )
            )
    return _tested(finding, outcomes)


def prediction_findings(
    reference: PredictionsReference, live: LiveCounts, min_rows: int
) -> list[Finding]:
    if isinstance(reference, ValueReference):
        return [value_finding(reference, live, min_rows)]
    classes = list(reference.classes)
    findings = [_prediction_finding("predicted class", reference.classes, live.predicted, min_rows)]
    # With two classes one histogram says all; with more, each class's has its own story.
    for label in classes[:1] if len(classes) == 2 else classes:
        expected = dict(
            zip(map(str, reference.probability_bounds), reference.probabilities[label], strict=True)
        )
        buckets = live.probability_counts(label)
        observed = {str(bound): buckets.get(bound, 0.0) for bound in reference.probability_bounds}
        findings.append(
            _prediction_finding(f"probability of {label}", expected, observed, min_rows, True)
        )
    return findings


def value_finding(reference: ValueReference, live: LiveCounts, min_rows: int) -> Finding:
    """A regressor's predicted values against its test-set predictions, in the same buckets
    (the service's histogram has the reference's bounds)."""
    bounds = [*reference.value_bounds, math.inf]
    expected = dict(zip(map(str, bounds), reference.values, strict=True))
    buckets = live.value_counts()
    observed = {str(bound): buckets.get(bound, 0.0) for bound in bounds}
    return _prediction_finding("predicted value", expected, observed, min_rows, True)


def _prediction_finding(
    name: str,
    expected: Mapping[str, float],
    observed: Mapping[str, float],
    min_rows: int,
    ordered: bool = False,
) -> Finding:
    finding = untested(name, "prediction", expected, observed)
    if finding.rows < min_rows:
        return finding
    try:
        outcome = g_test(list(finding.reference.values()), list(finding.live.values()), ordered)
    except NotEnoughData:
        return finding
    return _tested(finding, [outcome])


def untested(
    name: str, kind: str, expected: Mapping[str, float], observed: Mapping[str, float]
) -> Finding:
    """The finding's counts, in the reference's bins, before any test."""
    reference = {label: float(count) for label, count in expected.items()}
    live = {label: float(observed.get(label, 0.0)) for label in reference}
    return Finding(
        name=name,
        kind=kind,
        rows=sum(live.values()),
        shifted_share=total_variation(reference, live),
        reference=reference,
        live=live,
    )


def _tested(finding: Finding, outcomes: list[Outcome]) -> Finding:
    if not outcomes:
        return finding
    outcome = combined(outcomes)
    return replace(finding, test=outcome.test, statistic=outcome.statistic, p_value=outcome.p_value)


def with_verdicts(findings: list[Finding], alpha: float) -> list[Finding]:
    tested = [i for i, finding in enumerate(findings) if finding.p_value is not None]
    adjusted = holm_adjusted([findings[i].p_value for i in tested])  # type: ignore[misc]
    result = list(findings)
    for index, p_value in zip(tested, adjusted, strict=True):
        verdict = DRIFT if p_value <= alpha else NO_DRIFT
        result[index] = replace(findings[index], adjusted_p_value=p_value, verdict=verdict)
    return result


def traffic_shares(live: Mapping[str, LiveCounts]) -> dict[str, float]:
    total = sum(counts.rows for counts in live.values())
    return {version: (counts.rows / total if total else 0.0) for version, counts in live.items()}
