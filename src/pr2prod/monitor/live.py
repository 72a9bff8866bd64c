"""Live statistics, per model version: what the service counted (pr2prod.serving.telemetry).

Two sources, one result. A service's own GET /metrics gives its counts since it started;
a Prometheus server that scrapes the service gives the counts of a time range, as the
difference of every series between the range's start and end (a series that went down
restarted in between: what it counted since is its value at the end). Series are summed
over every label but model_version (workers, instances, jobs).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

import httpx

from pr2prod.deploy.observations import (
    PREDICTIONS,
    PROBABILITY_BUCKETS,
    VALUE_BUCKETS,
    MetricsUnavailable,
    PrometheusSource,
    Sample,
    VersionUnreachable,
    decumulate,
    parse_samples,
    sample_from_result,
)
from pr2prod.serving.feedback import LABELLED

FEATURE_VALUES = "pr2prod_feature_values_total"
FEEDBACK = "pr2prod_feedback_total"
FEEDBACK_ERRORS = "pr2prod_feedback_errors_total"
SERIES = (
    FEATURE_VALUES,
    PREDICTIONS,
    PROBABILITY_BUCKETS,
    VALUE_BUCKETS,
    FEEDBACK,
    FEEDBACK_ERRORS,
)


@dataclass
class LiveCounts:
    """One model version's counts: per feature and bin, per predicted class, per bucket
    (a regressor's: per bucket of predicted values)."""

    features: dict[str, dict[str, float]] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    probabilities: dict[str, dict[float, float]] = field(default_factory=dict)  # cumulative
    values: dict[float, float] = field(default_factory=dict)  # a regressor's, cumulative
    # Labelled predictions (POST /feedback): {(actual class, predicted class): count}; for a
    # regressor, sums of their errors by power (pr2prod.serving.feedback.ERROR_SUMS)
    feedback: dict[tuple[str, str], float] = field(default_factory=dict)
    error_sums: dict[str, float] = field(default_factory=dict)

    @property
    def rows(self) -> float:
        """Records predicted (each record is counted once per feature and once here)."""
        return sum(self.predicted.values()) + self.values.get(math.inf, 0.0)

    @property
    def labelled(self) -> float:
        """Predictions whose true label came back."""
        return sum(self.feedback.values()) + self.error_sums.get(LABELLED, 0.0)

    def value_counts(self) -> dict[float, float]:
        """A regressor's predictions per value bucket, by upper bound (not cumulative)."""
        return decumulate(self.values)

    def probability_counts(self, label: str) -> dict[float, float]:
        """Records per probability bucket of class `label`, by upper bound (not cumulative)."""
        return decumulate(self.probabilities.get(label, {}))


def live_counts(samples: Iterable[Sample]) -> dict[str, LiveCounts]:
    """Fold samples into counts per model version."""
    versions: dict[str, LiveCounts] = defaultdict(LiveCounts)
    for name, labels, value in samples:
        version = labels.get("model_version")
        if version is None:
            continue
        counts = versions[version]
        if name == FEATURE_VALUES:
            bins = counts.features.setdefault(labels["feature"], {})
            bins[labels["bin"]] = bins.get(labels["bin"], 0.0) + value
        elif name == PREDICTIONS:
            label = labels["predicted_class"]
            counts.predicted[label] = counts.predicted.get(label, 0.0) + value
        elif name == PROBABILITY_BUCKETS:
            buckets = counts.probabilities.setdefault(labels["class_name"], {})
            upper = float(labels["le"])
            buckets[upper] = buckets.get(upper, 0.0) + value
        elif name == VALUE_BUCKETS:
            upper = float(labels["le"])
            counts.values[upper] = counts.values.get(upper, 0.0) + value
        elif name == FEEDBACK_ERRORS:
            power = labels["sum"]
            counts.error_sums[power] = counts.error_sums.get(power, 0.0) + value
        elif name == FEEDBACK:
            cell = (labels["actual_class"], labels["predicted_class"])
            counts.feedback[cell] = counts.feedback.get(cell, 0.0) + value
    return dict(versions)


def from_service(base_url: str, timeout: float = 5.0) -> dict[str, LiveCounts]:
    """Counts since the service started, from its GET /metrics."""
    url = f"{base_url.rstrip('/')}/metrics"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        raise VersionUnreachable(
            f"{url} did not answer: {error!r}", hint="is the service running at that URL?"
        ) from error
    if response.status_code != 200:
        raise VersionUnreachable(f"{url} answered {response.status_code}")
    return live_counts(parse_samples(response.text))


def from_prometheus(
    prometheus: PrometheusSource, matchers: str, start: float, end: float
) -> dict[str, LiveCounts]:
    """Counts between two instants (Unix seconds), from a Prometheus that scrapes the service."""
    names = "|".join(SERIES)
    promql = "{" + ",".join(filter(None, (f'__name__=~"{names}"', matchers))) + "}"
    before = _by_series(prometheus.query(promql, at=start))
    after = _by_series(prometheus.query(promql, at=end))
    if not after:
        raise MetricsUnavailable(
            f"Prometheus has no pr2prod series matching {promql} at the end of the range",
            hint="check the selector and that Prometheus scrapes the service's /metrics",
        )
    return live_counts(_increase(before, after))


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def _by_series(result: list[dict]) -> dict[SeriesKey, Sample]:
    samples = (sample_from_result(item) for item in result)
    return {(name, tuple(sorted(labels.items()))): (name, labels, v) for name, labels, v in samples}


def _increase(
    before: Mapping[SeriesKey, Sample], after: Mapping[SeriesKey, Sample]
) -> list[Sample]:
    increases = []
    for key, (name, labels, value) in after.items():
        earlier = before.get(key, (name, labels, 0.0))[2]
        # A counter below its earlier value restarted: all it counted since is its value.
        increase = value if value < earlier or math.isnan(earlier) else value - earlier
        increases.append((name, labels, increase))
    return increases
