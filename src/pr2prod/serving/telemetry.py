"""Prometheus metrics about predictions, for canary analysis.

Created when a worker starts (not at import): BentoML sets up Prometheus's multiprocess
directory after importing the service module, and metrics made earlier would not show
on /metrics. Created once per process: a registry refuses the same metric twice.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from prometheus_client import Counter, Histogram

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
        )
