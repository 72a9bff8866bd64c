"""The reference a model carries: its training data and test predictions, in counts.

Drift is live traffic that no longer looks like what the model learnt from. To tell, each
model bundle holds a compact summary of its training split, per feature, and of the
model's predictions on the test split; the service counts live traffic in the very same
bins (pr2prod.serving.telemetry) and `pr2prod monitor` compares the two.

- A numeric feature: bin edges at quantiles of the training values (so every bin holds
  about as many training rows) and the training rows in each bin. Bin `i` holds values `v`
  with `edges[i-1] < v <= edges[i]` (Prometheus's `le` rule); the first and last bins are
  open, so a value outside the training range still has a bin.
- A categorical feature: training rows per category of the schema.
- Both: training rows where the value is missing.
- Predictions: test rows per predicted class, and per class a histogram of its predicted
  probability in the service's probability buckets; and the test split's confusion
  matrix, what live performance is compared with once true labels come back. For a
  numeric target, a histogram of the predicted values instead, in buckets whose bounds are
  deciles of the model's own test-set predictions: the service's histogram of predicted
  values (pr2prod_predicted_value) has exactly these bounds, so live values and the
  reference share their buckets.

Only counts and quantile edges are kept: no row of the data. The service reads this
module; pr2prod.release.reference writes the file (and never ships).
"""

from __future__ import annotations

import bisect
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

REFERENCE_FILE = "reference.json"
FORMAT = 1
# Bin labels that are not a numeric bin's index nor a category of the schema. A category
# the schema does not list is counted under UNSEEN, never under its own value: a label
# value per raw input would leak what clients send and grow the series without bound.
MISSING = "__missing__"
UNSEEN = "__unseen__"
# How a numeric target's predictions are marked in the file (a classifier's carry no type).
NUMERIC_PREDICTIONS = "numeric"


@dataclass(frozen=True)
class NumericReference:
    edges: tuple[float, ...]  # inner bin edges, rising; len(counts) == len(edges) + 1
    counts: tuple[int, ...]  # training rows per bin
    missing: int

    def bin_of(self, value: float) -> int:
        return bisect.bisect_left(self.edges, value)

    def bins(self) -> dict[str, int]:
        """Training rows per bin label, the labels the service counts live values under."""
        return {**{str(i): n for i, n in enumerate(self.counts)}, MISSING: self.missing}


@dataclass(frozen=True)
class CategoricalReference:
    counts: dict[str, int]  # training rows per category of the schema (zeros included)
    missing: int

    def bins(self) -> dict[str, int]:
        return {**self.counts, UNSEEN: 0, MISSING: self.missing}


@dataclass(frozen=True)
class PredictionReference:
    rows: int  # test rows
    classes: dict[str, int]  # test rows per predicted class
    probability_bounds: tuple[float, ...]  # the upper bounds of the probability buckets
    probabilities: dict[str, tuple[int, ...]]  # per class, test rows per bucket
    # Test rows per true class, then per predicted class (empty in references made before
    # it was kept: live performance is then not compared); and the positive class of a
    # binary target, which precision, recall and F1 are about.
    confusion: dict[str, dict[str, int]] = field(default_factory=dict)
    positive_class: str | None = None


@dataclass(frozen=True)
class ValueReference:
    """A regressor's predictions on the test split, in value buckets.

    Bucket `i` holds values `v` with `value_bounds[i-1] < v <= value_bounds[i]` (Prometheus's
    `le` rule); the last bucket holds every value above the last bound.
    """

    rows: int  # test rows
    value_bounds: tuple[float, ...]  # upper bounds of the buckets, rising (never empty)
    values: tuple[int, ...]  # test rows per bucket; len(values) == len(value_bounds) + 1
    # The test rows' errors as feedback counts them (pr2prod.serving.feedback.ERROR_SUMS),
    # what live errors are compared with; empty in references made before they were kept.
    errors: dict[str, float] = field(default_factory=dict)

    def bucket_of(self, value: float) -> int:
        return bisect.bisect_left(self.value_bounds, value)


FeatureReference = NumericReference | CategoricalReference
PredictionsReference = PredictionReference | ValueReference


@dataclass(frozen=True)
class Reference:
    rows: int  # training rows
    features: dict[str, FeatureReference]
    predictions: PredictionsReference

    def to_json(self) -> str:
        features = {
            name: {"type": "numeric" if isinstance(ref, NumericReference) else "categorical"}
            | asdict(ref)
            for name, ref in self.features.items()
        }
        predictions = asdict(self.predictions)
        if isinstance(self.predictions, ValueReference):
            predictions = {"type": NUMERIC_PREDICTIONS} | predictions
        body = {
            "format": FORMAT,
            "rows": self.rows,
            "features": features,
            "predictions": predictions,
        }
        return json.dumps(body, indent=1) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Reference:
        raw = json.loads(text)
        if raw.get("format") != FORMAT:
            raise ValueError(f"reference format {raw.get('format')!r}, expected {FORMAT}")
        return cls(
            rows=int(raw["rows"]),
            features={name: _feature(spec) for name, spec in raw["features"].items()},
            predictions=_predictions(raw["predictions"]),
        )

    @classmethod
    def load(cls, path: Path) -> Reference:
        return cls.from_json(path.read_text())


def _feature(spec: dict[str, Any]) -> FeatureReference:
    if spec["type"] == "numeric":
        return NumericReference(
            edges=tuple(float(edge) for edge in spec["edges"]),
            counts=tuple(int(count) for count in spec["counts"]),
            missing=int(spec["missing"]),
        )
    return CategoricalReference(
        counts={str(name): int(count) for name, count in spec["counts"].items()},
        missing=int(spec["missing"]),
    )


def _predictions(spec: dict[str, Any]) -> PredictionsReference:
    if spec.get("type") == NUMERIC_PREDICTIONS:
        return ValueReference(
            rows=int(spec["rows"]),
            value_bounds=tuple(float(bound) for bound in spec["value_bounds"]),
            values=tuple(int(count) for count in spec["values"]),
            errors={str(name): float(total) for name, total in spec.get("errors", {}).items()},
        )
    return PredictionReference(
        rows=int(spec["rows"]),
        classes={str(name): int(count) for name, count in spec["classes"].items()},
        probability_bounds=tuple(float(bound) for bound in spec["probability_bounds"]),
        probabilities={
            str(name): tuple(int(count) for count in counts)
            for name, counts in spec["probabilities"].items()
        },
        confusion={
            str(actual): {str(predicted): int(n) for predicted, n in row.items()}
            for actual, row in spec.get("confusion", {}).items()
        },
        positive_class=spec.get("positive_class"),
    )
