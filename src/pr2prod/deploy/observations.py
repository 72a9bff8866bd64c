"""What the canary analysis measures, and where the figures come from.

A `Snapshot` holds the cumulative /predict figures of ONE version at one instant. It can
be read from the version's own GET /metrics (`scrape`) or from a Prometheus server that
scrapes it (`PrometheusSource`); analysis never knows which. A `Window` is the difference
of two snapshots of the same version: what happened between them.

Series used (BentoML's and ours, see pr2prod.serving.telemetry):

- `bentoml_service_request_total{endpoint, http_response_code}`: requests per status code.
- `bentoml_service_request_duration_seconds_bucket{endpoint, le}`: request latency.
- `pr2prod_predictions_total{predicted_class}`: records predicted, per class.
- `pr2prod_predicted_probability_bucket{class_name, le}`: each class's predicted probability.
- `pr2prod_predicted_value_bucket{le}`: a regressor's predicted value, in buckets of its own.
- `pr2prod_model_seconds_bucket{le}`: the model's own time per call (one batch).

Only `endpoint="/predict"` counts: BentoML also counts health probes, /metrics itself and
every unknown path. Every other label (service_version, model_version, runner_name, and
Prometheus's job and instance) is summed over: the version was chosen by where the
figures were read, not by a label.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from pr2prod.errors import Pr2prodError

PREDICT_ENDPOINT = "/predict"
REQUESTS = "bentoml_service_request_total"
LATENCY_BUCKETS = "bentoml_service_request_duration_seconds_bucket"
PREDICTIONS = "pr2prod_predictions_total"
PROBABILITY_BUCKETS = "pr2prod_predicted_probability_bucket"
MODEL_SECONDS_BUCKETS = "pr2prod_model_seconds_bucket"
VALUE_BUCKETS = "pr2prod_predicted_value_bucket"
SERIES = (
    REQUESTS,
    LATENCY_BUCKETS,
    PREDICTIONS,
    PROBABILITY_BUCKETS,
    MODEL_SECONDS_BUCKETS,
    VALUE_BUCKETS,
)

Sample = tuple[str, Mapping[str, str], float]  # series name, its labels, its value


class ObservationError(Pr2prodError):
    """The figures of a version could not be read."""


class VersionUnreachable(ObservationError):
    """The version itself does not answer (or Prometheus could not scrape it lately).

    The controller counts this as a failed window: a canary that cannot be observed
    cannot be trusted with traffic.
    """


class MetricsUnavailable(ObservationError):
    """The metrics store (Prometheus) did not answer: says nothing about the version."""


@dataclass(frozen=True)
class Snapshot:
    """Cumulative /predict figures of one version at one instant (counters since it started).

    `requests_by_status` is keyed by the full HTTP status code as a string ("200", "400",
    "503"...): grouping into classes is the reader's business (`Window.errors` takes "5xx").
    Latency bounds are in seconds, as BentoML exposes them. Bucket dicts map each upper
    bound `le` (math.inf included) to the cumulative count of observations <= it.
    """

    requests_by_status: dict[str, float] = field(default_factory=dict)
    latency_buckets: dict[float, float] = field(default_factory=dict)
    predicted: dict[str, float] = field(default_factory=dict)
    probability_buckets: dict[str, dict[float, float]] = field(default_factory=dict)
    model_seconds_buckets: dict[float, float] = field(default_factory=dict)
    value_buckets: dict[float, float] = field(default_factory=dict)


def snapshot_from_samples(samples: Iterable[Sample]) -> Snapshot:
    """Fold samples of any origin into a Snapshot, summing over the labels that don't matter."""
    requests: dict[str, float] = defaultdict(float)
    latency: dict[float, float] = defaultdict(float)
    predicted: dict[str, float] = defaultdict(float)
    probabilities: dict[str, dict[float, float]] = defaultdict(lambda: defaultdict(float))
    model_seconds: dict[float, float] = defaultdict(float)
    values: dict[float, float] = defaultdict(float)
    for name, labels, value in samples:
        on_predict = labels.get("endpoint") == PREDICT_ENDPOINT
        if name == REQUESTS and on_predict:
            requests[labels["http_response_code"]] += value
        elif name == LATENCY_BUCKETS and on_predict:
            latency[float(labels["le"])] += value  # float() reads "+Inf" as math.inf
        elif name == PREDICTIONS:
            predicted[labels["predicted_class"]] += value
        elif name == PROBABILITY_BUCKETS:
            probabilities[labels["class_name"]][float(labels["le"])] += value
        elif name == MODEL_SECONDS_BUCKETS:
            model_seconds[float(labels["le"])] += value
        elif name == VALUE_BUCKETS:
            values[float(labels["le"])] += value
    return Snapshot(
        requests_by_status=dict(requests),
        latency_buckets=dict(latency),
        predicted=dict(predicted),
        probability_buckets={name: dict(buckets) for name, buckets in probabilities.items()},
        model_seconds_buckets=dict(model_seconds),
        value_buckets=dict(values),
    )


def parse_samples(text: str) -> list[Sample]:
    """Every sample of a Prometheus text exposition (what GET /metrics answers).

    The one reader of /metrics text in pr2prod, by prometheus_client's own parser: a
    series name is matched whole, never by prefix, and labels are unescaped.
    """
    try:
        return [
            (sample.name, sample.labels, sample.value)
            for family in text_string_to_metric_families(text)
            for sample in family.samples
        ]
    except ValueError as error:
        raise ObservationError(f"not Prometheus text format: {error}") from error


def parse_metrics(text: str) -> Snapshot:
    """The Snapshot in a Prometheus text exposition."""
    return snapshot_from_samples(parse_samples(text))


def scrape(base_url: str, timeout: float = 2.0) -> Snapshot:
    """Read a version's figures from its own GET /metrics."""
    url = f"{base_url.rstrip('/')}/metrics"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as error:
        raise VersionUnreachable(f"{url} did not answer: {error!r}") from error
    if response.status_code != 200:
        raise VersionUnreachable(f"{url} answered {response.status_code}")
    return parse_metrics(response.text)


Selector = Mapping[str, str] | Callable[[str], str]


class PrometheusSource:
    """Reads a version's Snapshot from a Prometheus server's HTTP API (instant queries).

    `selector` gives, for a version (whatever the caller names versions by, e.g. a
    Deployed.release), the label matchers of the scrape target(s) running it, without
    braces: `'instance="10.0.0.7:3000"'`, or a label the scrape config or Kubernetes
    relabelling adds to every series of the target, such as `'release="pr2prod:abc"'`.
    `service_version` alone is not enough: it is on BentoML's series only, not on ours
    (they carry model_version), and two releases of the same model share it.

    The figures are those of the latest scrape, so they lag the version by up to one
    scrape interval: windows should be much longer than that interval.
    """

    def __init__(self, base_url: str, selector: Selector, timeout: float = 5.0) -> None:
        self.base_url = base_url.rstrip("/")
        self.selector = selector
        self.timeout = timeout

    def matchers(self, version: str) -> str:
        if callable(self.selector):
            return self.selector(version)
        try:
            return self.selector[version]
        except KeyError:
            raise ObservationError(f"no Prometheus selector for version {version!r}") from None

    def snapshot(self, version: str) -> Snapshot:
        """The version's figures at Prometheus's latest scrape; VersionUnreachable if it is down."""
        matchers = self.matchers(version)
        # One query for `up` and every series: all of them are evaluated at the same instant.
        names = "|".join(("up", *SERIES))
        result = self.query("{" + ",".join(filter(None, (f'__name__=~"{names}"', matchers))) + "}")
        samples = [sample_from_result(item) for item in result]
        up = [value for name, _, value in samples if name == "up"]
        if not up:
            raise VersionUnreachable(f"Prometheus scrapes no target matching {{{matchers}}}")
        if not any(value == 1 for value in up):
            raise VersionUnreachable(
                f"Prometheus's last scrape of {{{matchers}}} failed (up == 0): the version is down"
            )
        return snapshot_from_samples(samples)

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """The result vector of an instant query, now or at Unix time `at`."""
        url = f"{self.base_url}/api/v1/query"
        params = {"query": promql} if at is None else {"query": promql, "time": f"{at:.3f}"}
        try:
            response = httpx.get(url, params=params, timeout=self.timeout)
        except httpx.HTTPError as error:
            raise MetricsUnavailable(f"Prometheus at {url} did not answer: {error!r}") from error
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            problem = body.get("error") or response.text[:200]
            raise MetricsUnavailable(f"Prometheus refused {promql!r}: {problem}")
        return body["data"]["result"]


def sample_from_result(item: Mapping[str, Any]) -> Sample:
    """One element of an instant-vector result: {"metric": {...}, "value": [time, "text"]}."""
    labels = dict(item["metric"])
    return labels.pop("__name__", ""), labels, float(item["value"][1])


@dataclass(frozen=True)
class Window:
    """What one version did between two snapshots: counts, not cumulative totals.

    `counts` is itself a Snapshot (cumulative within each histogram, as exposed) holding
    the differences; when the version restarted in between (some counter went down), it
    is everything since the restart.
    """

    counts: Snapshot

    @classmethod
    def between(cls, before: Snapshot, after: Snapshot) -> Window:
        if went_down(before, after):
            # Counters only fall when the process restarted: all it did since is in `after`.
            return cls(after)
        return cls(
            Snapshot(
                requests_by_status=subtract(after.requests_by_status, before.requests_by_status),
                latency_buckets=subtract(after.latency_buckets, before.latency_buckets),
                predicted=subtract(after.predicted, before.predicted),
                probability_buckets={
                    name: subtract(buckets, before.probability_buckets.get(name, {}))
                    for name, buckets in after.probability_buckets.items()
                },
                model_seconds_buckets=subtract(
                    after.model_seconds_buckets, before.model_seconds_buckets
                ),
                value_buckets=subtract(after.value_buckets, before.value_buckets),
            )
        )

    @property
    def requests(self) -> float:
        """/predict requests, whatever their status."""
        return sum(self.counts.requests_by_status.values())

    @property
    def errors(self) -> float:
        """/predict requests answered 5xx (4xx are the client's fault, not the version's)."""
        return sum(n for code, n in self.counts.requests_by_status.items() if code[:1] == "5")

    @property
    def error_rate(self) -> float | None:
        return self.errors / self.requests if self.requests else None

    @property
    def class_shares(self) -> dict[str, float]:
        """Share of the records predicted as each class."""
        return shares(self.counts.predicted)

    @property
    def probability_counts(self) -> dict[str, dict[float, float]]:
        """Per class, observations in each bucket (upper bound -> count), not cumulative."""
        return {
            name: decumulate(buckets) for name, buckets in self.counts.probability_buckets.items()
        }

    @property
    def value_counts(self) -> dict[float, float]:
        """A regressor's predicted values in each bucket (upper bound -> count)."""
        return decumulate(self.counts.value_buckets)

    @property
    def predictions(self) -> float:
        """Records predicted: each has a predicted class, or a predicted value."""
        if self.counts.value_buckets:
            return self.counts.value_buckets.get(math.inf, 0.0)
        return sum(self.counts.predicted.values())


def went_down(before: Snapshot, after: Snapshot) -> bool:
    """Did any counter of `before` fall (or vanish) by `after`?"""
    pairs: list[tuple[Mapping[Any, float], Mapping[Any, float]]] = [
        (before.requests_by_status, after.requests_by_status),
        (before.latency_buckets, after.latency_buckets),
        (before.predicted, after.predicted),
        (before.model_seconds_buckets, after.model_seconds_buckets),
        (before.value_buckets, after.value_buckets),
    ]
    pairs += [
        (buckets, after.probability_buckets.get(name, {}))
        for name, buckets in before.probability_buckets.items()
    ]
    return any(then.get(key, 0.0) > now.get(key, 0.0) for then, now in pairs for key in then)


def subtract(after: Mapping[Any, float], before: Mapping[Any, float]) -> dict[Any, float]:
    return {key: value - before.get(key, 0.0) for key, value in after.items()}


def decumulate(buckets: Mapping[float, float]) -> dict[float, float]:
    """Cumulative bucket counts -> count in each bucket, by upper bound."""
    counts, below = {}, 0.0
    for upper, cumulative in sorted(buckets.items()):
        counts[upper] = cumulative - below
        below = cumulative
    return counts


def shares(counts: Mapping[Any, float]) -> dict[Any, float]:
    total = sum(counts.values())
    return {key: value / total for key, value in counts.items()} if total > 0 else {}


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of cumulative buckets, interpolating linearly within a bucket.

    Same estimate as PromQL's histogram_quantile: the first bucket starts at 0, and a
    quantile that falls in the +Inf bucket is the largest finite bound (nothing better is
    known). None when there are no observations or no +Inf bucket to count them.
    """
    ordered = sorted(buckets.items())
    if len(ordered) < 2 or ordered[-1][0] != math.inf or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower, below = 0.0, 0.0
    for upper, cumulative in ordered:
        if cumulative >= rank and cumulative > below:
            if upper == math.inf:
                return lower
            return lower + (upper - lower) * (rank - below) / (cumulative - below)
        lower, below = upper, cumulative
    return lower
