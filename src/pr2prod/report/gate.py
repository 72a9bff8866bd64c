"""The quality gate: the rules in params.yaml (`gate:`) checked on the PR's metrics."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pr2prod.model.metrics import DECIMALS
from pr2prod.settings import GateRule


@dataclass(frozen=True)
class RuleResult:
    metric: str
    check: str  # what was required, in words
    value: str  # what was found
    passed: bool


def check_gate(
    rules: Mapping[str, GateRule], head: dict[str, float], base: dict[str, float] | None
) -> list[RuleResult]:
    """Each rule's limit and regression checks; regressions only when the base has the metric."""
    results: list[RuleResult] = []
    for metric, rule in rules.items():
        value = head.get(metric)
        if value is None:
            results.append(RuleResult(metric, "metric is reported", "missing", passed=False))
            continue
        if rule.limit is not None:
            sign = ">=" if rule.higher_is_better else "<="
            passed = value >= rule.limit if rule.higher_is_better else value <= rule.limit
            results.append(RuleResult(metric, f"{sign} {rule.limit:g}", f"{value:.4f}", passed))
        base_value = None if base is None else base.get(metric)
        if rule.max_regression is not None and base_value is not None:
            # A regression is a move in the worse direction; improvements never fail.
            worsening = (base_value - value) if rule.higher_is_better else (value - base_value)
            results.append(
                RuleResult(
                    metric,
                    f"regression vs base <= {rule.max_regression:g}",
                    f"{max(worsening, 0.0):.4f}",
                    passed=round(worsening, DECIMALS) <= rule.max_regression,
                )
            )
    return results
