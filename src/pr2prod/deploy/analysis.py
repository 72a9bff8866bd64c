"""The canary judgement: does the canary behave like stable over the same window?

Each check compares the canary with stable (relative) and holds it to an absolute cap:

- 5xx rate: canary <= stable + `error_rate_margin` (beyond sampling noise), and
  <= `error_rate_max`.
- p99 latency: canary <= `latency_p99_ratio` x stable, and <= `latency_p99_max_ms`;
  median latency: canary <= `latency_p50_ratio` x stable.
- Model time: the median time the model itself takes per call (no queueing, batching or
  HTTP), canary <= `model_time_ratio` x stable. Request latency depends on load, and a
  canary given 10% of the traffic waits in no queue: a model five times slower than
  stable's answered requests only 1.7-1.8x slower than busy stable in the first step.
- Predictions: the Jensen-Shannon divergence (base 2, 0..1) of the predicted-class shares,
  and of each class's predicted-probability histogram (the largest over classes), under a
  limit simulated for this window's sizes from both versions' answers to the same
  held-out rows (pr2prod.deploy.calibration); `prediction_divergence_max` without them.
  A regressor's predictions are values: the divergence of the predicted-value histograms
  (the canary's spread over stable's buckets), under a limit simulated the same way.

Too few requests make a window inconclusive: hold, never pass blindly. A failure that
needs no baseline (the absolute caps) still fails: a failure with evidence is a failure.

A latency over stable's ratio (p99, median or model time), with everything else in
order, makes the window suspect, not failed: a window's latencies are a few seconds of
two processes on a host they share with others, and one pause of the canary's process
(garbage collection, a busy core, a neighbour's build) delays every request it holds at
once; a tail rests on a handful of requests. The step's window runs again, fresh, and a
second latency breach in a row fails: a canary that is really slower is slower in every
window. A median or model time over twice its ratio (DECISIVE_FACTOR) fails at once, as
does a p99 beyond the absolute cap.

The guards against false rollbacks (an identical model must never be rolled back) are
constants here, not knobs; each is explained where it is defined, and tested with
simulated identical canaries in tests/unit/test_canary_analysis.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from pr2prod.deploy.calibration import Reference, ValueReference
from pr2prod.deploy.divergence import js_divergence, probability_divergence, value_divergence
from pr2prod.deploy.observations import Window, histogram_quantile
from pr2prod.settings import Thresholds

Outcome = Literal["pass", "fail", "inconclusive", "suspect"]

# Slow requests that a judged p99 never rests on alone (see judged_p99_ms): one pause of a
# process (garbage collection, a core taken by a neighbour) delays every request it holds
# at once, a handful at 50-100 requests/s.
STRAGGLERS = 5
# A p99 ratio against a tiny stable p99 is noise (1 ms vs 3 ms is no regression): the
# ratio is taken against at least this.
LATENCY_FLOOR_MS = 5.0
# The relative 5xx rule fails only when the canary's excess over stable + margin is also
# beyond this many standard deviations of sampling noise: with 50 requests a side, one
# unlucky 5xx would otherwise be "2% > 0% + 1%". Simulated identical versions erring 1%
# of the time then fail this rule in under 0.01% of 100-200-request windows.
ERROR_NOISE_Z = 2.0
# A median of fewer model calls than this is not compared (request latency still is): with
# adaptive batching, a version with many requests may still make few calls.
MIN_MODEL_CALLS = 20
# A canary median (or model time) over this many times its ratio to stable's fails in its
# first window: a pause of the host delays some requests, not the median by that much (a
# model five times slower shows 5-10 x). Nearer the ratio, a second window confirms.
DECISIVE_FACTOR = 2.0


@dataclass(frozen=True)
class Analysis:
    outcome: Outcome
    reasons: list[str]  # human sentences: why it failed, why inconclusive, or what passed
    figures: dict[str, float | None]  # for the deployment history


def analyse(
    stable: Window,
    canary: Window,
    thresholds: Thresholds,
    min_requests: int,
    breached_before: bool = False,
    reference: Reference | ValueReference | None = None,
) -> Analysis:
    """Judge one window: fail on evidence, inconclusive on too little data, suspect on a
    first latency breach, else pass.

    `breached_before`: the previous window of this step was suspect, so a latency breach
    now is the second in a row. `reference`: both versions' answers to the same held-out
    rows, from which the prediction divergence this window may show is simulated; without
    it, `prediction_divergence_max` is the fixed limit.
    """
    figures = window_figures(stable, canary)
    failures = absolute_failures(canary, thresholds, min_requests)
    doubts = too_few_requests(stable, canary, min_requests)
    slower = []
    if not doubts:
        limits = divergence_limits(stable, canary, thresholds, reference)
        figures |= {
            "class_divergence_limit": limits.classes,
            "probability_divergence_limit": limits.probabilities,
        }
        if "value_divergence" in figures:
            figures["value_divergence_limit"] = limits.values
        failures += relative_error_failure(stable, canary, thresholds)
        failures += divergence_failures(stable, canary, limits)
        decisive, slower = latency_breaches(stable, canary, thresholds)
        failures += decisive
    if slower and breached_before:
        failures += [f"{reason} (second window in a row)" for reason in slower]
    elif failures:
        failures += slower  # failing anyway: name the latency too
    if failures:
        return Analysis("fail", failures, figures)
    if slower:
        reasons = "; ".join(slower)
        return Analysis("suspect", [f"{reasons}: the window runs again to confirm"], figures)
    if doubts:
        return Analysis("inconclusive", doubts, figures)
    return Analysis("pass", [passed_summary(figures)], figures)


def window_figures(stable: Window, canary: Window) -> dict[str, float | None]:
    probability, _ = probability_divergence(stable.probability_counts, canary.probability_counts)
    # A regressor's windows: the divergence of the predicted values (a classifier has none).
    values = {}
    if stable.counts.value_buckets or canary.counts.value_buckets:
        values["value_divergence"] = value_divergence(stable.value_counts, canary.value_counts)
    return {
        "stable_requests": stable.requests,
        "canary_requests": canary.requests,
        "stable_errors": stable.errors,
        "canary_errors": canary.errors,
        "stable_error_rate": stable.error_rate,
        "canary_error_rate": canary.error_rate,
        "stable_p99_ms": judged_p99_ms(stable),
        "canary_p99_ms": judged_p99_ms(canary),
        "stable_p50_ms": median_ms(stable),
        "canary_p50_ms": median_ms(canary),
        "stable_model_p50_ms": model_median_ms(stable),
        "canary_model_p50_ms": model_median_ms(canary),
        "class_divergence": js_divergence(stable.counts.predicted, canary.counts.predicted),
        "probability_divergence": probability,
        **values,
    }


def too_few_requests(stable: Window, canary: Window, min_requests: int) -> list[str]:
    doubts = []
    if canary.requests < min_requests:
        doubts.append(
            f"only {canary.requests:.0f} canary requests in the window (< {min_requests}): "
            "too few to judge"
        )
    if stable.requests < min_requests:
        doubts.append(
            f"only {stable.requests:.0f} stable requests in the window (< {min_requests}): "
            "no baseline to compare the canary with"
        )
    return doubts


def absolute_failures(canary: Window, thresholds: Thresholds, min_requests: int) -> list[str]:
    """The caps, which need no baseline. With few requests, only what is already certain."""
    failures = []
    # Counting the requests still missing to min_requests as successes: when even that
    # breaks the cap, more traffic cannot save the canary (10 errors in 12 requests).
    judged = max(canary.requests, min_requests)
    if judged and canary.errors / judged > thresholds.error_rate_max:
        failures.append(
            f"canary 5xx rate {percent(canary.errors / canary.requests)} > cap "
            f"{percent(thresholds.error_rate_max)} ({canary.errors:.0f} of "
            f"{canary.requests:.0f} requests)"
        )
    # A p99 over fewer requests is one or two requests' latency: not evidence enough.
    p99 = judged_p99_ms(canary) if canary.requests >= min_requests else None
    if p99 is not None and p99 > thresholds.latency_p99_max_ms:
        failures.append(
            f"canary p99 latency {p99:.1f} ms > cap {thresholds.latency_p99_max_ms:g} ms"
        )
    return failures


def relative_error_failure(stable: Window, canary: Window, thresholds: Thresholds) -> list[str]:
    stable_rate, canary_rate = stable.error_rate or 0.0, canary.error_rate or 0.0
    noise = error_noise(stable, canary)
    if canary_rate <= stable_rate + thresholds.error_rate_margin + noise:
        return []
    return [
        f"canary 5xx rate {percent(canary_rate)} > stable {percent(stable_rate)} + "
        f"{percent(thresholds.error_rate_margin)} (+ {percent(noise)} allowed for sampling "
        f"noise over {canary.requests:.0f} and {stable.requests:.0f} requests)"
    ]


def error_noise(stable: Window, canary: Window) -> float:
    """ERROR_NOISE_Z standard deviations of the difference of the two 5xx rates.

    Agresti-Caffo: one error and one success added to each side before estimating, so a
    handful of errors (or none) still gets an honest spread, where the plain estimate
    says "no noise at all" for 0 errors.
    """
    variance = sum(
        rate * (1 - rate) / (window.requests + 2)
        for window in (stable, canary)
        for rate in [(window.errors + 1) / (window.requests + 2)]
    )
    return ERROR_NOISE_Z * math.sqrt(variance)


def latency_breaches(
    stable: Window, canary: Window, thresholds: Thresholds
) -> tuple[list[str], list[str]]:
    """The latency comparisons with stable: (breaches that fail at once, breaches that a
    second window in a row must confirm).

    The median is compared as well as the p99: under load, stable's own tail (queues,
    garbage collection) can hide a canary that is slower on every single request. A
    median or model time over DECISIVE_FACTOR times its ratio is no pause of the host and
    fails at once; the p99, which rests on a handful of requests, always waits for a
    second window.
    """
    checks = (
        ("p99", judged_p99_ms(stable), judged_p99_ms(canary), thresholds.latency_p99_ratio),
        ("p50", median_ms(stable), median_ms(canary), thresholds.latency_p50_ratio),
        (
            "model p50",
            model_median_ms(stable),
            model_median_ms(canary),
            thresholds.model_time_ratio,
        ),
    )
    decisive: list[str] = []
    to_confirm: list[str] = []
    for name, stable_ms, canary_ms, limit in checks:
        breach = latency_ratio_failure(name, stable_ms, canary_ms, limit)
        if not breach:
            continue
        assert stable_ms is not None and canary_ms is not None  # a breach compared them
        gross = canary_ms > DECISIVE_FACTOR * limit * max(stable_ms, LATENCY_FLOOR_MS)
        (decisive if gross and name != "p99" else to_confirm).extend(breach)
    return decisive, to_confirm


def latency_ratio_failure(
    name: str, stable_ms: float | None, canary_ms: float | None, limit: float
) -> list[str]:
    if stable_ms is None or canary_ms is None:
        return []
    baseline = max(stable_ms, LATENCY_FLOOR_MS)
    if canary_ms <= limit * baseline:
        return []
    floor = f" (floor {LATENCY_FLOOR_MS:g} ms)" if stable_ms < LATENCY_FLOOR_MS else ""
    return [
        f"canary {name} latency {canary_ms:.1f} ms > {limit:g} x stable {name} "
        f"{baseline:.1f} ms{floor}"
    ]


def median_ms(window: Window) -> float | None:
    seconds = histogram_quantile(0.5, window.counts.latency_buckets)
    return None if seconds is None else seconds * 1000


def model_median_ms(window: Window) -> float | None:
    """The model's median time per call, when it made at least MIN_MODEL_CALLS calls."""
    buckets = window.counts.model_seconds_buckets
    if buckets.get(math.inf, 0.0) < MIN_MODEL_CALLS:
        return None
    seconds = histogram_quantile(0.5, buckets)
    return None if seconds is None else seconds * 1000


def judged_p99_ms(window: Window) -> float | None:
    """p99 latency, except that STRAGGLERS slow requests never decide it alone.

    Under 500 requests the p99 would rest on the five slowest or fewer: one pause of the
    canary's process would roll back a good canary. There, the quantile at rank n-5 is
    used (the sixth slowest); from 500 requests on this is the plain p99.
    """
    total = window.counts.latency_buckets.get(math.inf, 0.0)
    q = min(0.99, (total - STRAGGLERS) / total) if total > STRAGGLERS else 0.99
    seconds = histogram_quantile(q, window.counts.latency_buckets)
    return None if seconds is None else seconds * 1000


@dataclass(frozen=True)
class DivergenceLimits:
    classes: float
    probabilities: float
    basis: str  # how they were set, for a failure's reason ("" for the fixed setting)
    values: float = math.inf  # of a regressor's predicted values


def divergence_limits(
    stable: Window,
    canary: Window,
    thresholds: Thresholds,
    reference: Reference | ValueReference | None,
) -> DivergenceLimits:
    """The most prediction divergence this window may show.

    With a reference, it is what two models answering as they did on the held-out rows
    would show over windows of these sizes (pr2prod.deploy.calibration): on small data, many
    classes or few requests, honest sampling noise is large, and a fixed limit rolls back
    good canaries; on large windows it is small, and a fixed limit lets skew through.
    """
    fixed = thresholds.prediction_divergence_max
    if reference is None:
        return DivergenceLimits(fixed, fixed, "", fixed)
    stable_records, canary_records = stable.predictions, canary.predictions
    basis = (
        f"the most {stable_records:.0f} stable and {canary_records:.0f} canary predictions "
        f"allow, simulated from both versions' answers to the same {reference.rows} "
        "held-out rows before traffic"
    )
    if isinstance(reference, ValueReference):
        # Each version counts values in buckets of its own, read from its /metrics.
        expected = reference.live_limits(
            stable_records,
            canary_records,
            tuple(sorted(stable.counts.value_buckets)) or None,
            tuple(sorted(canary.counts.value_buckets)) or None,
        )
        return DivergenceLimits(fixed, fixed, basis, expected.values or 0.0)
    expected = reference.live_limits(stable_records, canary_records)
    return DivergenceLimits(expected.classes or 0.0, expected.probabilities or 0.0, basis, fixed)


def divergence_failures(stable: Window, canary: Window, limits: DivergenceLimits) -> list[str]:
    def limit(value: float) -> str:
        return f"{value:.3f}" if limits.basis else f"{value:g}"

    why = f"; {limits.basis}" if limits.basis else ""
    failures = []
    classes = js_divergence(stable.counts.predicted, canary.counts.predicted)
    if classes is not None and classes > limits.classes:
        failures.append(
            f"predicted-class divergence {classes:.3f} > {limit(limits.classes)} "
            f"(Jensen-Shannon{why}): canary {describe_shares(canary.class_shares)} vs stable "
            f"{describe_shares(stable.class_shares)}"
        )
    probabilities, worst = probability_divergence(
        stable.probability_counts, canary.probability_counts
    )
    if probabilities is not None and probabilities > limits.probabilities:
        failures.append(
            f"predicted-probability divergence {probabilities:.3f} > "
            f"{limit(limits.probabilities)} (Jensen-Shannon, class {worst!r}{why})"
        )
    values = value_divergence(stable.value_counts, canary.value_counts)
    if values is not None and values > limits.values:
        failures.append(
            f"predicted-value divergence {values:.3f} > {limit(limits.values)} "
            f"(Jensen-Shannon over stable's value buckets{why}): canary median "
            f"{number(histogram_quantile(0.5, canary.counts.value_buckets))} vs stable "
            f"{number(histogram_quantile(0.5, stable.counts.value_buckets))}"
        )
    return failures


def passed_summary(figures: Mapping[str, float | None]) -> str:
    if figures.get("value_divergence") is not None:
        divergence = f"values {ratio(figures['value_divergence'])}"
    else:
        divergence = (
            f"classes {ratio(figures['class_divergence'])}, "
            f"probabilities {ratio(figures['probability_divergence'])}"
        )
    return (
        f"canary within thresholds over {figures['canary_requests']:.0f} requests "
        f"(stable {figures['stable_requests']:.0f}): 5xx {percent(figures['canary_error_rate'])} "
        f"vs {percent(figures['stable_error_rate'])}, p99 {ms(figures['canary_p99_ms'])} vs "
        f"{ms(figures['stable_p99_ms'])}, divergence {divergence}"
    )


def describe_shares(class_shares: Mapping[str, float]) -> str:
    if not class_shares:
        return "no predictions"
    return ", ".join(f"{name} {percent(share)}" for name, share in sorted(class_shares.items()))


def percent(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def ms(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f} ms"


def number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def ratio(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"
