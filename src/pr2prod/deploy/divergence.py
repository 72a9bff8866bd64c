"""How far apart two versions' predictions are: Jensen-Shannon divergences of histograms.

The same measure serves live windows (counts read from /metrics) and the reference both
versions answered before any traffic (pr2prod.deploy.calibration), so a live figure and
what was expected of it are always computed alike.

A classifier's histograms share their buckets (fixed probability bounds). A regressor's
predicted-value buckets are each version's own (edges from its model's test predictions),
so the canary's histogram is first redistributed over stable's buckets (`regrid`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import numpy as np

from pr2prod.deploy.observations import shares

Key = TypeVar("Key")

# Probability buckets are merged with their neighbours until the smaller sample would
# expect at least this many observations in each (the chi-square rule of thumb, doubled):
# a histogram of 50 predictions over 10 buckets is mostly empty buckets, and a JS
# divergence over them is noise (identical models gave up to 0.25 before merging).
MIN_EXPECTED_PER_BUCKET = 10.0


ProbabilityCounts = Mapping[str, Mapping[float, float]]  # class -> bucket bound -> count
BucketCounts = Mapping[float, float]  # bucket upper bound (math.inf last) -> count in it


def probability_divergence(
    stable_counts: ProbabilityCounts, canary_counts: ProbabilityCounts
) -> tuple[float | None, str | None]:
    """The largest divergence over classes of the probability histograms, and its class."""
    worst: tuple[float | None, str | None] = (None, None)
    for name in sorted(set(stable_counts) | set(canary_counts)):
        merged = merge_sparse_buckets(stable_counts.get(name, {}), canary_counts.get(name, {}))
        divergence = js_divergence(*merged)
        if divergence is not None and (worst[0] is None or divergence > worst[0]):
            worst = (divergence, name)
    return worst


def value_divergence(stable_counts: BucketCounts, canary_counts: BucketCounts) -> float | None:
    """The divergence of two predicted-value histograms, on stable's buckets.

    Each version counts in buckets of its own; the canary's counts are spread over
    stable's (`regrid`) before sparse buckets are merged, as for probabilities.
    """
    if not stable_counts or not canary_counts:
        return js_divergence(stable_counts, canary_counts)
    on_stable_buckets = regrid(canary_counts, sorted(stable_counts))
    return js_divergence(*merge_sparse_buckets(stable_counts, on_stable_buckets))


def regrid(counts: BucketCounts, bounds: Sequence[float]) -> dict[float, float]:
    """Counts in buckets with other upper `bounds` (ascending, math.inf last).

    Within a bucket the observations are taken as spread evenly (as Prometheus's
    histogram_quantile does); the open-ended first and last buckets as spread over the
    width of their finite neighbour (deciles' outer buckets are about that wide). Same
    bounds give the same counts.
    """
    ordered = sorted(counts.items())
    total = sum(count for _, count in ordered)
    finite = [bound for bound, _ in ordered if math.isfinite(bound)]
    if not finite:  # nothing but the +Inf bucket: no telling where they are
        return {bound: (0.0 if math.isfinite(bound) else total) for bound in bounds}
    cumulative = list(itertools.accumulate(count for _, count in ordered))[: len(finite)]
    points, below = finite, cumulative
    if len(finite) > 1:
        first_width, last_width = finite[1] - finite[0], finite[-1] - finite[-2]
        points = [finite[0] - first_width, *finite, finite[-1] + last_width]
        below = [0.0, *cumulative, total]
    finite_bounds = [bound for bound in bounds if math.isfinite(bound)]
    interpolated = np.interp(finite_bounds, points, below, left=0.0, right=total).tolist()
    at_bounds = [*interpolated, total][: len(bounds)]  # observations <= each bound
    return dict(zip(bounds, np.diff(at_bounds, prepend=0.0).tolist(), strict=True))


def merge_sparse_buckets(
    first: Mapping[float, float], second: Mapping[float, float]
) -> tuple[dict[float, float], dict[float, float]]:
    """Merge neighbouring buckets (by upper bound) until each is well filled in both samples.

    A merged bucket is kept once the smaller sample would expect MIN_EXPECTED_PER_BUCKET
    observations in it if both samples came from one distribution; a thin tail joins the
    last bucket kept.
    """
    first_total, second_total = sum(first.values()), sum(second.values())
    if not first_total or not second_total:
        return dict(first), dict(second)
    smaller_share = min(first_total, second_total) / (first_total + second_total)
    merged_first: dict[float, float] = {}
    merged_second: dict[float, float] = {}
    held_first = held_second = 0.0
    for upper in sorted(set(first) | set(second)):
        held_first += first.get(upper, 0.0)
        held_second += second.get(upper, 0.0)
        if (held_first + held_second) * smaller_share >= MIN_EXPECTED_PER_BUCKET:
            merged_first[upper], merged_second[upper] = held_first, held_second
            held_first = held_second = 0.0
    if held_first or held_second:
        last = max(merged_first, default=math.inf)
        merged_first[last] = merged_first.get(last, 0.0) + held_first
        merged_second[last] = merged_second.get(last, 0.0) + held_second
    return merged_first, merged_second


def js_divergence(first: Mapping[Key, float], second: Mapping[Key, float]) -> float | None:
    """Jensen-Shannon divergence, base 2, of two count (or share) dicts: 0 same, 1 disjoint.

    None when neither has anything; 1 when only one has: a version that predicts nothing
    while the other predicts is as different as it gets.
    """
    p, q = shares(first), shares(second)
    if not p or not q:
        return None if not p and not q else 1.0
    divergence = 0.0
    for key in set(p) | set(q):
        a, b = p.get(key, 0.0), q.get(key, 0.0)
        middle = (a + b) / 2
        divergence += (a * math.log2(a / middle) if a else 0.0) / 2
        divergence += (b * math.log2(b / middle) if b else 0.0) / 2
    return max(0.0, divergence)  # rounding can make identical inputs a hair negative
