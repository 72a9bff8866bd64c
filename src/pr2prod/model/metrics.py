"""Classification metrics from true labels and class probabilities.

One definition serves `evaluate` (metrics.json) and the report's bootstrap, so a
confidence interval is always about exactly the figure that metrics.json shows. The
figures are computed from confusion counts and ranks with numpy: a bootstrap needs
thousands of evaluations, and scikit-learn's per-call input checks would take most of
the time. tests/unit/test_metrics.py checks every figure against scikit-learn.

For a binary target, precision, recall and F1 are about the positive class; with more
classes they (and ROC-AUC, one-vs-rest) are macro averages over the classes.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import rankdata

DECIMALS = 6  # enough for any comparison, short enough to diff by eye


def classification_metrics(
    actual: np.ndarray, probabilities: np.ndarray, classes: list[str], positive_class: str | None
) -> dict[str, object]:
    """metrics.json: overall figures, `test_rows` and a `per_class` breakdown.

    `actual` holds class labels; `probabilities` one column per class, in `classes` order.
    """
    truth = _class_indices(actual, classes)
    predicted = probabilities.argmax(axis=1)
    hits = np.zeros((len(classes), 3))  # per class: true positives, predicted, actual
    for index in range(len(classes)):
        is_predicted, is_actual = predicted == index, truth == index
        hits[index] = (np.sum(is_predicted & is_actual), is_predicted.sum(), is_actual.sum())
    true_positives, predicted_counts, actual_counts = hits.T
    precision = _ratio(true_positives, predicted_counts)
    recall = _ratio(true_positives, actual_counts)
    f1 = _ratio(2 * true_positives, predicted_counts + actual_counts)
    auc = np.array(
        [_roc_auc(truth == index, probabilities[:, index]) for index in range(len(classes))]
    )

    if len(classes) == 2 and positive_class is not None:
        chosen = classes.index(positive_class)
        summary = (precision[chosen], recall[chosen], f1[chosen], auc[chosen])
    else:
        summary = (precision.mean(), recall.mean(), f1.mean(), auc.mean())
    result: dict[str, object] = {
        "accuracy": _round(np.mean(predicted == truth)),
        "precision": _round(summary[0]),
        "recall": _round(summary[1]),
        "f1": _round(summary[2]),
        "roc_auc": _round(summary[3]),
        "log_loss": _round(_log_loss(truth, probabilities)),
        "test_rows": len(truth),
        "per_class": {
            label: {
                "precision": _round(precision[index]),
                "recall": _round(recall[index]),
                "f1": _round(f1[index]),
                "support": int(actual_counts[index]),
            }
            for index, label in enumerate(classes)
        },
    }
    return result


def flatten_metrics(figures: dict[str, object], prefix: str = "") -> dict[str, float]:
    """{"per_class": {"a": {"f1": 0.9}}} -> {"per_class.a.f1": 0.9}, for row-by-row comparison."""
    flat: dict[str, float] = {}
    for name, value in figures.items():
        key = f"{prefix}{name}"
        if isinstance(value, dict):
            flat.update(flatten_metrics(value, prefix=f"{key}."))
        elif isinstance(value, int | float) and not isinstance(value, bool):
            flat[key] = float(value)
    return flat


def _class_indices(actual: np.ndarray, classes: list[str]) -> np.ndarray:
    lookup = {label: index for index, label in enumerate(classes)}
    return np.array([lookup[str(label)] for label in actual], dtype=int)


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    # An undefined ratio (nothing predicted or present) counts as 0, like zero_division=0.
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def _roc_auc(is_positive: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve as the Mann-Whitney statistic (ties count one half)."""
    positives = int(is_positive.sum())
    negatives = len(is_positive) - positives
    if positives == 0 or negatives == 0:
        return float("nan")  # undefined with one class only (possible in a bootstrap draw)
    rank_sum = rankdata(scores)[is_positive].sum()
    return float((rank_sum - positives * (positives + 1) / 2) / (positives * negatives))


def _log_loss(truth: np.ndarray, probabilities: np.ndarray) -> float:
    # Rows are renormalised and clipped as scikit-learn does, so that rounded
    # probabilities (predictions.csv keeps six decimals) give the same figure.
    normalised = probabilities / probabilities.sum(axis=1, keepdims=True)
    eps = np.finfo(normalised.dtype).eps
    chosen = np.clip(normalised[np.arange(len(truth)), truth], eps, 1 - eps)
    return float(-np.mean(np.log(chosen)))


def _round(value: float) -> float:
    return round(float(value), DECIMALS)
