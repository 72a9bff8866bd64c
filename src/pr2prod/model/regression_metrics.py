"""Regression metrics from true and predicted values.

One definition serves `evaluate` (metrics.json) and, later, the report's bootstrap, so an
interval is about exactly the figure metrics.json shows. Plain numpy, checked against
scikit-learn in tests/unit/test_metrics.py.
"""

from __future__ import annotations

import numpy as np

from pr2prod.model.metrics import DECIMALS

# Errors: lower is better. R2: higher is better (the report's directions).
LOWER_IS_BETTER = ("rmse", "mae", "median_absolute_error", "mape")


def regression_metrics(actual: np.ndarray, predicted: np.ndarray) -> dict[str, object]:
    """metrics.json for a numeric target. MAPE only when no true value is zero: a
    percentage of zero is undefined, and near-zero values would make it meaningless."""
    actual, predicted = np.asarray(actual, dtype=float), np.asarray(predicted, dtype=float)
    errors = predicted - actual
    spread = np.sum((actual - actual.mean()) ** 2)
    result: dict[str, object] = {
        "rmse": _round(np.sqrt(np.mean(errors**2))),
        "mae": _round(np.mean(np.abs(errors))),
        "median_absolute_error": _round(np.median(np.abs(errors))),
        # R2 of a constant test target is undefined; 0 says "no better than its mean".
        "r2": _round(1 - np.sum(errors**2) / spread) if spread > 0 else 0.0,
    }
    if np.all(actual != 0):
        result["mape"] = _round(np.mean(np.abs(errors / actual)))
    result["test_rows"] = len(actual)
    return result


def _round(value: float) -> float:
    return round(float(value), DECIMALS)
