"""What prediction divergence to expect between stable and a canary, known before traffic.

Before the canary gets any traffic, both versions answer the same held-out rows (the test
split). That gives two things:

- how different the two models are on identical inputs (`Reference.offline`): an honest
  retraining moves a few rows' probabilities, a broken model moves the whole histogram;
- how large a live window's divergence may honestly be (`Reference.live_limits`): a window
  compares stable's predictions for some requests with the canary's for others, so its
  divergence is the models' own difference plus sampling noise, and that noise grows as
  the requests, the distinct inputs among them, or the data shrink, and as the classes
  multiply. The limit is simulated: windows of the same sizes are drawn from the held-out
  rows, both versions' recorded answers are histogrammed exactly as /metrics would, and
  the divergence is measured as a live window's is. A live divergence beyond nearly all
  of those simulated ones means the canary does not behave live as it did on the same
  rows before traffic.

A regressor's answers are values, not probabilities (`ValueReference`): the histograms
are of predicted values, stable's in buckets with edges at the quantiles of its own
answers to the held-out rows (the test split: the edges its bundle gives its /metrics),
and the noise is simulated the same way.

No per-row answer is stored in a bundle or an image: the answers are asked for live, from
the rows the deploying workspace already holds.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
import numpy as np

from pr2prod.deploy.divergence import js_divergence, probability_divergence, value_divergence
from pr2prod.serving.telemetry import PROBABILITY_BUCKETS

# Simulated windows per limit; the limit is LIMIT_HEADROOM times the LIMIT_QUANTILE of
# their divergences. A far tail quantile of a thousand simulations is itself noise (the
# 99.9th is the second largest); the 99th is steady. Measured on the three-class test set
# (tests/unit/test_divergence_calibration.py), 4,000 windows of honest retrainings reached
# at most 1.77 times it, while a canary flattening its probabilities live showed 2.2-3.1
# times it in 95% of windows of 100 requests or more. The headroom also absorbs live
# traffic that is not drawn exactly like the held-out rows.
SIMULATIONS = 1000
LIMIT_QUANTILE = 0.99
LIMIT_HEADROOM = 2.0
# Below this, a divergence is no difference anyone would roll back for, however large
# the samples (a simulated limit shrinks as windows grow).
LIMIT_FLOOR = 0.02
# A fixed seed: the same window sizes give the same limits on every run.
SIMULATION_SEED = 20261207
# The most held-out rows asked for and simulated from: enough to describe the models'
# answers, few enough to ask in one request each and keep a simulation quick.
MAX_REFERENCE_ROWS = 500
BUCKET_BOUNDS = np.asarray((*PROBABILITY_BUCKETS, np.inf))
# Answers over HTTP keep six decimals: a probability this close to a bound may be on
# either side of it in the service's own histogram.
BOUND_TOLERANCE = 1e-6
# Predicted values are bucketed at the quantiles of stable's answers to the held-out rows
# when no version's own edges are known (before traffic): deciles, as the service's are.
VALUE_QUANTILES = tuple(step / 10 for step in range(1, 10))


@dataclass(frozen=True)
class Divergences:
    classes: float | None = None  # of the predicted-class shares
    probabilities: float | None = None  # the largest over classes, of probability histograms
    worst_class: str | None = None  # the class whose probabilities diverge most
    values: float | None = None  # of the predicted-value histograms (a regressor's)

    def beyond(self, limit: float) -> list[str]:
        """Each divergence over `limit`, in words."""
        found = []
        if self.classes is not None and self.classes > limit:
            found.append(f"predicted-class divergence {self.classes:.3f} > {limit:g}")
        if self.probabilities is not None and self.probabilities > limit:
            found.append(
                f"predicted-probability divergence {self.probabilities:.3f} > {limit:g} "
                f"(class {self.worst_class!r})"
            )
        if self.values is not None and self.values > limit:
            found.append(f"predicted-value divergence {self.values:.3f} > {limit:g}")
        return found

    def describe(self) -> str:
        """The divergences measured, in words: "0.012 (classes) and 0.034 (probabilities)"."""
        named = [("classes", self.classes), ("probabilities", self.probabilities)]
        if self.values is not None:
            named = [("values", self.values)]
        return " and ".join(f"{value or 0:.3f} ({name})" for name, value in named)


@dataclass(frozen=True)
class Reference:
    """Both versions' predicted probabilities for the same held-out rows (rows x classes)."""

    classes: tuple[str, ...]
    stable: np.ndarray
    canary: np.ndarray
    # Limits already simulated, by window size: a held step asks again for the same sizes.
    _limits: dict[tuple[int, int, int], Divergences] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def rows(self) -> int:
        return len(self.stable)

    def offline(self) -> Divergences:
        """How far apart the two models' histograms are over the very same rows."""
        once = np.ones((1, self.rows))
        return divergences(
            histogram_tables(self.stable, once, self.classes)(0),
            histogram_tables(self.canary, once, self.classes)(0),
        )

    def live_limits(
        self, stable_records: float, canary_records: float, distinct_inputs: float | None = None
    ) -> Divergences:
        """The divergences a live window of these sizes stays under when both versions
        answer its inputs as they answered the held-out rows.

        Stable answers `stable_records` draws from a pool of `distinct_inputs` held-out
        rows (all of them when unknown), the canary `canary_records` draws from the same
        pool: the same traffic, split between the two.
        """
        pool_size = self.rows
        if distinct_inputs is not None:
            pool_size = int(min(max(distinct_inputs, 1), self.rows))
        key = (int(stable_records), int(canary_records), pool_size)
        if key not in self._limits:
            self._limits[key] = self._simulated_limits(*key)
        return self._limits[key]

    def _simulated_limits(
        self, stable_records: int, canary_records: int, pool_size: int
    ) -> Divergences:
        rng = np.random.default_rng(SIMULATION_SEED)
        # Both versions of one simulation draw from the same pool: the same traffic, split.
        pools = [rng.permutation(self.rows)[:pool_size] for _ in range(SIMULATIONS)]
        stable_weights, canary_weights = (
            _draws(rng, int(records), pools, self.rows)
            for records in (stable_records, canary_records)
        )
        stable_tables = histogram_tables(self.stable, stable_weights, self.classes)
        canary_tables = histogram_tables(self.canary, canary_weights, self.classes)
        class_values, probability_values = [], []
        for simulation in range(SIMULATIONS):
            found = divergences(stable_tables(simulation), canary_tables(simulation))
            class_values.append(found.classes or 0.0)
            probability_values.append(found.probabilities or 0.0)
        return Divergences(
            classes=_limit(class_values),
            probabilities=_limit(probability_values),
            worst_class=None,
        )


Bounds = tuple[float, ...]  # bucket upper bounds, ascending, math.inf last


@dataclass(frozen=True)
class ValueReference:
    """Both versions' predicted values for the same held-out rows (a regressor's)."""

    stable: np.ndarray
    canary: np.ndarray
    _limits: dict[tuple[int, int, int, Bounds, Bounds], Divergences] = field(
        default_factory=dict, compare=False, repr=False
    )

    @property
    def rows(self) -> int:
        return len(self.stable)

    def stable_bounds(self) -> Bounds:
        """Buckets at the quantiles of stable's answers: its test predictions' deciles."""
        edges = np.unique(np.quantile(self.stable, VALUE_QUANTILES))
        return (*edges.tolist(), math.inf)

    def offline(self) -> Divergences:
        """How far apart the two models' value histograms are over the very same rows,
        both counted in stable's buckets."""
        bounds = self.stable_bounds()
        once = np.ones((1, self.rows))
        stable, canary = (
            value_tables(answers, once, bounds)(0) for answers in (self.stable, self.canary)
        )
        return Divergences(values=value_divergence(stable, canary))

    def live_limits(
        self,
        stable_records: float,
        canary_records: float,
        stable_bounds: Bounds | None = None,
        canary_bounds: Bounds | None = None,
        distinct_inputs: float | None = None,
    ) -> Divergences:
        """The value divergence a live window of these sizes stays under when both versions
        answer its inputs as they answered the held-out rows, each counting in its own
        buckets (as read from its /metrics; stable's quantiles for either when unknown)."""
        pool_size = self.rows
        if distinct_inputs is not None:
            pool_size = int(min(max(distinct_inputs, 1), self.rows))
        stable_bounds = tuple(stable_bounds or self.stable_bounds())
        canary_bounds = tuple(canary_bounds or stable_bounds)
        key = (int(stable_records), int(canary_records), pool_size, stable_bounds, canary_bounds)
        if key not in self._limits:
            self._limits[key] = self._simulated_limits(*key)
        return self._limits[key]

    def _simulated_limits(
        self,
        stable_records: int,
        canary_records: int,
        pool_size: int,
        stable_bounds: Bounds,
        canary_bounds: Bounds,
    ) -> Divergences:
        rng = np.random.default_rng(SIMULATION_SEED)
        pools = [rng.permutation(self.rows)[:pool_size] for _ in range(SIMULATIONS)]
        stable_weights, canary_weights = (
            _draws(rng, records, pools, self.rows) for records in (stable_records, canary_records)
        )
        stable_tables = value_tables(self.stable, stable_weights, stable_bounds)
        canary_tables = value_tables(self.canary, canary_weights, canary_bounds)
        simulated = [
            value_divergence(stable_tables(simulation), canary_tables(simulation)) or 0.0
            for simulation in range(SIMULATIONS)
        ]
        return Divergences(values=_limit(simulated))


def value_tables(
    values: np.ndarray, weights: np.ndarray, bounds: Bounds
) -> Callable[[int], dict[float, float]]:
    """What /metrics would count in each value bucket (by upper bound) if row i were
    answered weights[s, i] times, in simulation s."""
    bounds_array = np.asarray(bounds)
    # A value on a bucket's edge (edges are the test predictions' quantiles, so some are
    # answers themselves) lands on either side of it live, while the answers read here are
    # rounded: such a row counts half in each bucket. Relative, since values have units.
    tolerance = BOUND_TOLERANCE * np.maximum(1.0, np.abs(values))
    one_hot = np.eye(len(bounds_array))
    below = np.searchsorted(bounds_array, values - tolerance, side="left")
    above = np.searchsorted(bounds_array, values + tolerance, side="left")
    counts = weights @ ((one_hot[below] + one_hot[above]) / 2)  # simulations x buckets

    def table(simulation: int) -> dict[float, float]:
        return dict(zip(bounds, counts[simulation].tolist(), strict=True))

    return table


def _limit(simulated: list[float]) -> float:
    return max(LIMIT_FLOOR, LIMIT_HEADROOM * float(np.quantile(simulated, LIMIT_QUANTILE)))


def _draws(rng: np.random.Generator, draws: int, pools: list[np.ndarray], rows: int) -> np.ndarray:
    """Simulations x rows: how often each row is drawn when `draws` requests pick uniformly
    from that simulation's pool of rows."""
    weights = np.zeros((len(pools), rows))
    for simulation, pool in enumerate(pools):
        uniform = np.full(len(pool), 1 / len(pool))
        weights[simulation, pool] = rng.multinomial(max(draws, 0), uniform)
    return weights


Tables = tuple[dict[str, float], dict[str, dict[float, float]]]


def histogram_tables(
    probabilities: np.ndarray, weights: np.ndarray, classes: Sequence[str]
) -> Callable[[int], Tables]:
    """What /metrics would count if row i were answered weights[s, i] times, in simulation
    s: records per predicted class, and per class the records in each probability bucket
    (by upper bound, the service's own buckets). Counted for every simulation at once."""
    predicted = probabilities.argmax(axis=1)
    class_counts = weights @ np.eye(len(classes))[predicted]  # simulations x classes
    # A probability on a bucket's bound (a forest's 0.3) lands on either side of it live,
    # as the service's arithmetic rounds it (float32 in a compiled graph), while the
    # answers read here keep six decimals: such a row counts half in each bucket.
    one_hot = np.eye(len(BUCKET_BOUNDS))
    below = np.searchsorted(BUCKET_BOUNDS, probabilities - BOUND_TOLERANCE, side="left")
    above = np.searchsorted(BUCKET_BOUNDS, probabilities + BOUND_TOLERANCE, side="left")
    bucket_counts = [
        weights @ ((one_hot[below[:, c]] + one_hot[above[:, c]]) / 2) for c in range(len(classes))
    ]

    def tables(simulation: int) -> Tables:
        return (
            {
                name: float(n)
                for name, n in zip(classes, class_counts[simulation], strict=True)
                if n
            },
            {
                name: dict(zip(BUCKET_BOUNDS.tolist(), counts[simulation].tolist(), strict=True))
                for name, counts in zip(classes, bucket_counts, strict=True)
            },
        )

    return tables


def divergences(stable: Tables, canary: Tables) -> Divergences:
    probabilities, worst = probability_divergence(stable[1], canary[1])
    return Divergences(js_divergence(stable[0], canary[0]), probabilities, worst)


def ask_reference(
    stable_url: str, canary_url: str, records: list[dict[str, Any]], timeout: float = 30.0
) -> Reference | ValueReference | None:
    """Both versions' answers for the same held-out records, asked of each version directly
    (no client traffic). None when the versions predict different classes: there is then
    nothing to compare a window with. TaskChanged when one predicts classes and the other
    values (asked before any record is sent: their requests may differ too)."""
    records = records[:MAX_REFERENCE_ROWS]
    if not records:
        return None
    metadata = [_metadata(url, timeout) for url in (stable_url, canary_url)]
    stable_classes, canary_classes = (list(found.get("classes") or ()) for found in metadata)
    if bool(stable_classes) != bool(canary_classes):
        raise TaskChanged(_predicts(stable_classes), _predicts(canary_classes))
    if stable_classes != canary_classes:
        return None
    stable, canary = (
        _answers(url, found, records, timeout)
        for url, found in zip((stable_url, canary_url), metadata, strict=True)
    )
    if not stable_classes:
        return ValueReference(stable, canary)
    return Reference(tuple(stable_classes), stable, canary)


def _metadata(url: str, timeout: float) -> dict[str, Any]:
    """The version's GET /model: its classes (none for a regressor) and serving policy."""
    return httpx.get(f"{url.rstrip('/')}/model", timeout=timeout).raise_for_status().json()


class TaskChanged(Exception):
    """One version predicts classes, the other values: their answers have other shapes."""

    def __init__(self, stable: str, canary: str) -> None:
        super().__init__(f"the canary predicts {canary} where stable predicts {stable}")
        self.stable, self.canary = stable, canary


def _predicts(classes: Sequence[str]) -> str:
    return f"classes ({', '.join(classes)})" if classes else "values"


# Where a regressor's answer holds its predicted value.
VALUE_FIELD = "predicted"


def _answers(
    url: str, metadata: dict[str, Any], records: list[dict[str, Any]], timeout: float
) -> np.ndarray:
    """The version's answers: a row of probabilities per record in class order, or a
    regressor's value per record."""
    classes = list(metadata.get("classes") or ())
    chunk = int(metadata["policy"]["max_records"])
    rows: list[Any] = []
    with httpx.Client(base_url=url, timeout=timeout) as client:
        for start in range(0, len(records), chunk):
            response = client.post("/predict", json={"records": records[start : start + chunk]})
            response.raise_for_status()
            rows += [
                [answer["probabilities"][name] for name in classes]
                if classes
                else answer[VALUE_FIELD]
                for answer in response.json()
            ]
    return np.asarray(rows, dtype=float)
