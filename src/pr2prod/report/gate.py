"""The quality gate: the rules in params.yaml (`gate:`) checked on the PR's metrics, and
one rule every pull request obeys: it commits what its own pipeline reproduces."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from pr2prod.model.metrics import DECIMALS
from pr2prod.report.reproducibility import Reproducibility
from pr2prod.settings import GateRule

# The reproduction rule's name in the gate table, and what to do when it fails.
REPRODUCTION = "reproduction"
REPRODUCE_AND_COMMIT = "run `make repro`, then commit dvc.lock and results/"


@dataclass(frozen=True)
class RuleResult:
    metric: str
    check: str  # what was required, in words
    value: str  # what was found, or why the rule does not apply
    passed: bool | None  # None: the rule does not apply to this comparison and decides nothing

    @property
    def failed(self) -> bool:
        return self.passed is False


def check_gate(
    rules: Mapping[str, GateRule],
    head: dict[str, float],
    base: dict[str, float] | None,
    base_incomparable: str | None = None,
) -> list[RuleResult]:
    """Each rule's limit and regression checks; regressions only when the base has the metric.

    `base_incomparable` says why the base's figures measure something else (another target
    or task): rules relative to the base are then listed as not applicable, and only the
    absolute limits decide.
    """
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
        if rule.max_regression is not None and base_value is not None and base_incomparable:
            results.append(
                RuleResult(
                    metric,
                    f"regression vs base <= {rule.max_regression:g}",
                    f"not applicable: {base_incomparable}",
                    passed=None,
                )
            )
        elif rule.max_regression is not None and base_value is not None:
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


def check_reproduction(reproducibility: Reproducibility) -> RuleResult:
    """Does the commit hold the dvc.lock and metrics its pipeline reproduces here?

    main's workflow reproduces the pipeline and refuses to release when they differ
    (`make verify`), so a pull request that passes without this rule would break main.
    """
    if not reproducibility.committed:
        return RuleResult(REPRODUCTION, "dvc.lock is committed", "missing", passed=False)
    differences = len(reproducibility.lock_differences) + len(reproducibility.metric_differences)
    found = "as committed" if differences == 0 else f"{differences} difference(s)"
    return RuleResult(
        REPRODUCTION, "dvc.lock and metrics as reproduced", found, passed=differences == 0
    )
