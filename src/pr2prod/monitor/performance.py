"""Concept drift: live performance on the labelled predictions against the test split's.

Inputs can look as they always did while what they mean changes (fraud moves to other
patterns, a new instrument reads differently): only true labels tell. Once feedback comes
back (POST /feedback), the service holds a confusion matrix per model version; the model's
reference holds the test split's. Both are samples, so the comparison is the report's
bootstrap: labelled rows and test rows are each resampled with replacement (on their
confusion counts, where resampling rows is a multinomial draw) and every metric of the
gate that a confusion matrix defines (accuracy, precision, recall, F1) is computed on
both, many times.

A regressor's feedback comes as sums of its errors (count, and the sums of |error|,
error^2 and error^4), for which there are no rows to resample: the mean absolute error and
the root mean squared error then get normal intervals from those sums (the latter by the
delta method), on both sides.

A metric alarms when, with confidence 1 - alpha / (metrics compared), it breaks a gate
rule on live data: live minus test worse than `max_regression` (the largest regression a
pull request may bring, now measured against the model's own test figure), or the live
value beyond the gate's `min`/`max`. Fewer than `monitor.min_rows` labelled predictions is
not enough data, never an alarm.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

from pr2prod.monitor.drift import DRIFT, NO_DRIFT, NOT_ENOUGH_DATA
from pr2prod.serving.feedback import ERROR_SUMS, LABELLED
from pr2prod.serving.reference import PredictionReference, PredictionsReference
from pr2prod.settings import GateRule

# The gate's metrics a confusion matrix defines (ROC-AUC and log-loss need probabilities,
# which feedback does not carry).
CONFUSION_METRICS = ("accuracy", "precision", "recall", "f1")
# A regressor's gate metrics that its errors' sums define (R2 needs the true values' spread).
ERROR_METRICS = ("mae", "rmse")


@dataclass(frozen=True)
class PerformanceFinding:
    metric: str
    rule: str  # the gate rule checked, in words
    test_value: float
    live_value: float | None
    live_interval: tuple[float, float] | None  # at 1 - 2 * the one-sided level
    delta_bound: float | None  # the most favourable live - test at that confidence
    labelled: float  # labelled predictions behind it
    verdict: str = NOT_ENOUGH_DATA


def confusion_metrics(counts: np.ndarray, positive: int | None) -> dict[str, np.ndarray]:
    """Figures of confusion matrices `counts` (..., true class, predicted class), computed as
    pr2prod.model.metrics computes them from rows: binary precision, recall and F1 about
    the `positive` class, otherwise macro averages."""
    true_positives = np.diagonal(counts, axis1=-2, axis2=-1)
    predicted, actual = counts.sum(axis=-2), counts.sum(axis=-1)
    total = counts.sum(axis=(-2, -1))
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, actual)
    f1 = _ratio(2 * true_positives, predicted + actual)
    if positive is None:
        summary = precision.mean(axis=-1), recall.mean(axis=-1), f1.mean(axis=-1)
    else:
        summary = precision[..., positive], recall[..., positive], f1[..., positive]
    return {
        "accuracy": _ratio(true_positives.sum(axis=-1), total),
        "precision": summary[0],
        "recall": summary[1],
        "f1": summary[2],
    }


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    numerator, denominator = np.asarray(numerator, float), np.asarray(denominator, float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def confusion_matrix(cells: Mapping[tuple[str, str], float], classes: Sequence[str]) -> np.ndarray:
    """{(actual, predicted): count} as a matrix, rows the true class, in `classes` order."""
    return np.array(
        [[cells.get((actual, predicted), 0.0) for predicted in classes] for actual in classes]
    )


def performance_findings(
    reference: PredictionsReference,
    live: Mapping[tuple[str, str], float],
    gate: Mapping[str, GateRule],
    alpha: float,
    min_rows: int,
    resamples: int,
    seed: int,
) -> list[PerformanceFinding]:
    """Each gate rule on a confusion metric, live against the test split; [] without labels
    or without the test split's confusion matrix (references made before it was kept)."""
    rules = {name: rule for name, rule in gate.items() if name in CONFUSION_METRICS}
    labelled = float(sum(live.values()))
    if not isinstance(reference, PredictionReference) or not reference.confusion:
        return []
    if not rules or labelled == 0:
        return []
    classes = list(reference.classes)
    test = confusion_matrix(
        {(a, p): n for a, row in reference.confusion.items() for p, n in row.items()}, classes
    )
    observed = confusion_matrix(live, classes)
    positive = (
        classes.index(reference.positive_class)
        if len(classes) == 2 and reference.positive_class in classes
        else None
    )
    test_values = {name: float(v) for name, v in confusion_metrics(test, positive).items()}
    live_values = {name: float(v) for name, v in confusion_metrics(observed, positive).items()}
    if labelled < min_rows:
        return [
            PerformanceFinding(
                name, _rule_text(rule), test_values[name], live_values[name], None, None, labelled
            )
            for name, rule in rules.items()
        ]
    rng = np.random.default_rng(seed)
    live_draws = confusion_metrics(_resampled(observed, resamples, rng), positive)
    test_draws = confusion_metrics(_resampled(test, resamples, rng), positive)
    level = alpha / len(rules)  # one-sided, Bonferroni over the metrics compared
    findings = []
    for name, rule in rules.items():
        # Oriented so that larger is better: the bound is the most favourable value at 1 - level.
        sign = 1.0 if rule.higher_is_better else -1.0
        live_bound = sign * np.quantile(sign * live_draws[name], 1 - level)
        delta_bound = sign * np.quantile(sign * (live_draws[name] - test_draws[name]), 1 - level)
        low, high = np.quantile(live_draws[name], [level, 1 - level])
        broken = breaks_rule(rule, delta_bound, live_bound)
        findings.append(
            PerformanceFinding(
                metric=name,
                rule=_rule_text(rule),
                test_value=test_values[name],
                live_value=live_values[name],
                live_interval=(float(low), float(high)),
                delta_bound=float(delta_bound),
                labelled=labelled,
                verdict=DRIFT if broken else NO_DRIFT,
            )
        )
    return findings


def breaks_rule(rule: GateRule, delta_bound: float, live_bound: float) -> bool:
    """Whether live performance breaks `rule`: its change against the test split even at
    the bound most favourable to the model (`delta_bound`), or its level (`live_bound`)."""
    sign = 1.0 if rule.higher_is_better else -1.0
    if rule.max_regression is not None and sign * delta_bound < -rule.max_regression:
        return True
    return rule.limit is not None and sign * live_bound < sign * rule.limit


def error_findings(
    test_sums: Mapping[str, float],
    live_sums: Mapping[str, float],
    gate: Mapping[str, GateRule],
    alpha: float,
    min_rows: int,
) -> list[PerformanceFinding]:
    """A regressor's gate rules on MAE and RMSE, live against the test split, from sums of
    errors; [] without labels or without the test split's sums."""
    rules = {name: rule for name, rule in gate.items() if name in ERROR_METRICS}
    labelled = float(live_sums.get(LABELLED, 0.0))
    if not test_sums or not rules or labelled == 0:
        return []
    test, live = error_figures(test_sums), error_figures(live_sums)
    z = float(stats.norm.isf(alpha / len(rules)))
    findings = []
    for name, rule in rules.items():
        (test_value, test_se), (live_value, live_se) = test[name], live[name]
        if labelled < min_rows:
            text = _rule_text(rule)
            findings.append(
                PerformanceFinding(name, text, test_value, live_value, None, None, labelled)
            )
            continue
        sign = 1.0 if rule.higher_is_better else -1.0
        delta_bound = (live_value - test_value) + sign * z * math.hypot(live_se, test_se)
        live_bound = live_value + sign * z * live_se
        broken = breaks_rule(rule, delta_bound, live_bound)
        findings.append(
            PerformanceFinding(
                metric=name,
                rule=_rule_text(rule),
                test_value=test_value,
                live_value=live_value,
                live_interval=(live_value - z * live_se, live_value + z * live_se),
                delta_bound=delta_bound,
                labelled=labelled,
                verdict=DRIFT if broken else NO_DRIFT,
            )
        )
    return findings


def error_figures(sums: Mapping[str, float]) -> dict[str, tuple[float, float]]:
    """MAE and RMSE from sums of errors (ERROR_SUMS), each with its standard error."""
    count, absolute, squared, fourth = (float(sums.get(name, 0.0)) for name in ERROR_SUMS)
    if count == 0:
        return {"mae": (math.nan, math.nan), "rmse": (math.nan, math.nan)}
    mae, mse = absolute / count, squared / count
    mae_se = math.sqrt(max(mse - mae**2, 0.0) / count)
    mse_se = math.sqrt(max(fourth / count - mse**2, 0.0) / count)
    rmse = math.sqrt(mse)
    return {"mae": (mae, mae_se), "rmse": (rmse, mse_se / (2 * rmse) if rmse > 0 else 0.0)}


def _resampled(counts: np.ndarray, resamples: int, rng: np.random.Generator) -> np.ndarray:
    """Confusion matrices of `resamples` bootstrap samples of the rows `counts` holds."""
    total = round(float(counts.sum()))
    shares = counts.ravel() / counts.sum()
    draws = rng.multinomial(total, shares, size=resamples)
    return draws.reshape(resamples, *counts.shape)


def _rule_text(rule: GateRule) -> str:
    parts = []
    if rule.max_regression is not None:
        parts.append(
            f"live - test {'>=' if rule.higher_is_better else '<='} "
            f"{'-' if rule.higher_is_better else '+'}{rule.max_regression:g}"
        )
    if rule.limit is not None:
        parts.append(f"{'>=' if rule.higher_is_better else '<='} {rule.limit:g}")
    return " and ".join(parts)
