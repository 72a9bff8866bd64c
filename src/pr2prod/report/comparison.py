"""Every metric, base vs PR: the delta, whether it is better or worse, and how sure we are."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pr2prod.model.regression_metrics import LOWER_IS_BETTER as REGRESSION_ERRORS
from pr2prod.report.bootstrap import DeltaIntervals
from pr2prod.settings import GateRule

# Directions of metrics that no gate rule mentions. Counts (test_rows, support) have none.
LOWER_IS_BETTER = {"log_loss", *REGRESSION_ERRORS}
NO_DIRECTION = {"test_rows"}


@dataclass(frozen=True)
class MetricRow:
    name: str
    base: float | None
    head: float | None
    higher_is_better: bool | None  # None: a count, neither better nor worse
    interval: tuple[float, float] | None = None
    comparable: bool = True  # False: the base measured another target or task

    @property
    def delta(self) -> float | None:
        if self.base is None or self.head is None or not self.comparable:
            return None
        return self.head - self.base

    @property
    def within_noise(self) -> bool | None:
        """True when the confidence interval of the delta includes zero."""
        if self.interval is None:
            return None
        low, high = self.interval
        return low <= 0 <= high

    @property
    def change(self) -> str:
        """'better', 'worse', 'same' or '' (no base or no direction)."""
        delta = self.delta
        if delta is None or self.higher_is_better is None:
            return ""
        if abs(delta) < 1e-12:
            return "same"
        return "better" if (delta > 0) == self.higher_is_better else "worse"


def direction(name: str, rules: Mapping[str, GateRule]) -> bool | None:
    if name in rules:
        return rules[name].higher_is_better
    leaf = name.rsplit(".", 1)[-1]
    if name in NO_DIRECTION or leaf == "support":
        return None
    return leaf not in LOWER_IS_BETTER


def compare_metrics(
    base: dict[str, float] | None,
    head: dict[str, float],
    rules: Mapping[str, GateRule],
    intervals: DeltaIntervals | None,
    comparable: bool = True,
) -> list[MetricRow]:
    """One row per metric in either revision: overall figures first, then per class.

    When not `comparable` (the base's target or task differs), both figures are listed
    but no delta is drawn between them.
    """
    names = list(head) + [name for name in (base or {}) if name not in head]
    rows = []
    for name in names:
        higher = direction(name, rules)
        interval = None
        if intervals is not None and higher is not None:
            interval = intervals.intervals.get(name)
        rows.append(
            MetricRow(
                name=name,
                base=None if base is None else base.get(name),
                head=head.get(name),
                higher_is_better=higher,
                interval=interval,
                comparable=comparable,
            )
        )
    return rows
