"""Prometheus metrics about predictions and inputs, for canary analysis and drift monitoring.

Created when a worker starts (not at import): BentoML sets up Prometheus's multiprocess
directory after importing the service module, and metrics made earlier would not show
on /metrics. Created once per process: a registry refuses the same metric twice.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter as Tally
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client import Counter, Histogram

from pr2prod.serving.reference import (
    MISSING,
    REFERENCE_FILE,
    UNSEEN,
    NumericReference,
    Reference,
)

logger = logging.getLogger("pr2prod.serving")

PROBABILITY_BUCKETS = tuple(round(step / 10, 1) for step in range(1, 11))

# Request-duration buckets (seconds) for BentoML's own latency histogram, which the canary
# analysis reads quantiles from. Each bound is 1.25 x the previous, 1 ms to ~40 s, so an
# interpolated quantile is off by at most a quarter. BentoML's defaults jump from 100 ms to
# 250 ms: a p99 anywhere in that range read as "212 ms", and a 2 x ratio between two
# versions became a coin toss on which side of 100 ms their slowest requests fell.
LATENCY_BUCKETS = tuple(round(0.001 * 1.25**step, 6) for step in range(48))


@dataclass
class PredictionMetrics:
    predicted_classes: Counter
    probabilities: Histogram
    input_warnings: Counter
    model_seconds: Histogram
    feature_values: Counter
    feedback: Counter
    feedback_errors: Counter

    @classmethod
    @functools.cache
    def create(cls) -> PredictionMetrics:
        return cls(
            predicted_classes=Counter(
                "pr2prod_predictions",
                "Predictions served, by predicted class",
                ["predicted_class", "model_version"],
            ),
            probabilities=Histogram(
                "pr2prod_predicted_probability",
                "Predicted probability of each class",
                ["class_name", "model_version"],
                buckets=PROBABILITY_BUCKETS,
            ),
            input_warnings=Counter(
                "pr2prod_input_warnings",
                "Records accepted with a warning (serving policy 'warn'), by field",
                ["field", "model_version"],
            ),
            model_seconds=Histogram(
                "pr2prod_model_seconds",
                "Time the model took per call (one batch), without queueing, batching or HTTP",
                ["model_version"],
                buckets=LATENCY_BUCKETS,
            ),
            feature_values=Counter(
                "pr2prod_feature_values",
                "Input values per feature, counted in the bins of the model's reference "
                "(numeric: bin index; categorical: category, __unseen__; both: __missing__)",
                ["feature", "bin", "model_version"],
            ),
            feedback=Counter(
                "pr2prod_feedback",
                "Predictions whose true label came back (POST /feedback): a confusion matrix",
                ["predicted_class", "actual_class", "model_version"],
            ),
            feedback_errors=Counter(
                "pr2prod_feedback_errors",
                "A regressor's predictions whose true value came back (POST /feedback): the "
                "count (sum=labelled) and the sums of |error|, error^2 and error^4",
                ["sum", "model_version"],
            ),
        )


# A numeric target's predictions: one histogram per model version, in the buckets of the
# model's reference (deciles of its own test-set predictions, at most VALUE_BUCKETS).
PREDICTED_VALUE = "pr2prod_predicted_value"


@functools.cache
def predicted_value_histogram(bounds: tuple[float, ...]) -> Histogram:
    """The histogram of predicted values, with the upper bucket bounds `bounds`.

    A registry takes a metric once per process, and a process serves one model: the
    bounds are its reference's, the same for every call. Prometheus adds the last bucket,
    +Inf, for values above them.
    """
    return Histogram(
        PREDICTED_VALUE,
        "Predicted value of each record (numeric target), in buckets bounded by deciles of "
        "the model's own test-set predictions",
        ["model_version"],
        buckets=bounds,
    )


class FeatureStatistics:
    """Counts each record's values in the bins of the model's reference.

    Every label value comes from the reference (a bin index, a category of the schema,
    __unseen__ or __missing__), never from a request: the series stay as few as the
    reference's bins, and /metrics shows no client's data.
    """

    def __init__(self, reference: Reference, counter: Counter, model_version: str) -> None:
        self.numeric: list[tuple[str, NumericReference]] = []
        self.categories: dict[str, frozenset[str]] = {}
        for name, feature in reference.features.items():
            if isinstance(feature, NumericReference):
                self.numeric.append((name, feature))
            else:
                self.categories[name] = frozenset(feature.counts)
        # Children resolved once: a labelled child costs a dict lookup per increment.
        self.children = {
            (name, label): counter.labels(name, label, model_version)
            for name, feature in reference.features.items()
            for label in feature.bins()
        }
        for child in self.children.values():
            child.inc(0)  # every series exists from the start: no traffic reads as zero

    def observe(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Count the records' values (one increment per bin a batch touches)."""
        tally: Tally[tuple[str, str]] = Tally()
        for row in rows:
            for name, feature in self.numeric:
                value = row[name]
                if value is None or value != value:  # None or NaN
                    tally[name, MISSING] += 1
                else:
                    tally[name, str(feature.bin_of(value))] += 1
            for name, known in self.categories.items():
                value = row[name]
                if value is None:
                    tally[name, MISSING] += 1
                else:
                    tally[name, value if value in known else UNSEEN] += 1
        for key, count in tally.items():
            self.children[key].inc(count)


def feature_statistics(
    bundle: Path, metrics: PredictionMetrics, model_version: str
) -> FeatureStatistics | None:
    """Input statistics for the bundle's reference; None for a bundle made without one."""
    if not (bundle / REFERENCE_FILE).is_file():
        # Models stored before bundles carried a reference: they serve, unmonitored.
        logger.warning(
            "model %s has no %s: inputs are not counted for drift monitoring "
            "(rebuild its model with `make bento` after removing it from the store)",
            model_version,
            REFERENCE_FILE,
        )
        return None
    reference = Reference.load(bundle / REFERENCE_FILE)
    return FeatureStatistics(reference, metrics.feature_values, model_version)
