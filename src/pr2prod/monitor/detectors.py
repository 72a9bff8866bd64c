"""Tests that tell whether live counts still come from the reference's distribution.

Both sides are samples: the reference counts the training rows (a few hundred in the
sample data), the service counts live traffic. So the tests are two-sample tests on a
2 x k table (reference, live) x bins, whose false-alarm rate holds whatever either
sample's size:

- the values present: a G-test (log-likelihood chi-square) on the bins, after merging
  sparse bins until every expected count is at least MIN_EXPECTED, where the chi-square
  approximation holds; when even two bins cannot reach it there is not enough data;
- the share of missing values (and of categories the schema does not list): Fisher's
  exact test, exact for any count, since these are often zero in the reference.

A feature's p-value is the smallest of its sub-tests times their number (Bonferroni); a
run's features and prediction tests are then held together by Holm's step-down
correction, so a run on unshifted traffic alarms with probability at most `alpha`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

MIN_EXPECTED = 5.0


class NotEnoughData(Exception):
    """The counts cannot support the test's approximation."""


@dataclass(frozen=True)
class Outcome:
    test: str  # what was tested, e.g. "G-test, 10 bins" or "Fisher: missing share"
    statistic: float
    p_value: float


def g_test(reference: Sequence[float], live: Sequence[float], ordered: bool) -> Outcome:
    """Two-sample G-test of the bins' shares; sparse bins merged first (NotEnoughData)."""
    table = merge_sparse(np.asarray(reference, float), np.asarray(live, float), ordered)
    if table.shape[1] < 2:
        raise NotEnoughData("fewer than two bins with enough expected counts")
    statistic, p_value, _, _ = stats.chi2_contingency(
        table, correction=False, lambda_="log-likelihood"
    )
    return Outcome(f"G-test, {table.shape[1]} bins", float(statistic), float(p_value))


def merge_sparse(reference: np.ndarray, live: np.ndarray, ordered: bool) -> np.ndarray:
    """The 2 x k table with sparse bins merged until each expected count >= MIN_EXPECTED.

    Ordered bins (numeric) merge with a neighbour, so a merged bin is still an interval;
    unordered ones (categories) merge with the next smallest.
    """
    table = np.vstack([reference, live])
    table = table[:, table.sum(axis=0) > 0]
    row_totals = table.sum(axis=1)
    if (row_totals == 0).any():
        return table[:, :0]
    # A bin's smaller expected count is its total times the smaller row's share.
    needed = MIN_EXPECTED * row_totals.sum() / row_totals.min()
    while table.shape[1] > 1:
        totals = table.sum(axis=0)
        smallest = int(totals.argmin())
        if totals[smallest] >= needed:
            break
        if ordered:
            neighbours = [j for j in (smallest - 1, smallest + 1) if 0 <= j < len(totals)]
            partner = min(neighbours, key=lambda j: totals[j])
        else:
            partner = int(np.argsort(totals)[1])
        table[:, partner] += table[:, smallest]
        table = np.delete(table, smallest, axis=1)
    return table


def fisher_share(
    reference_in: float, reference_total: float, live_in: float, live_total: float, what: str
) -> Outcome:
    """Fisher's exact test: is the share of `what` the same in both samples?"""
    table = [
        [int(reference_in), int(reference_total - reference_in)],
        [round(live_in), round(live_total - live_in)],
    ]
    statistic, p_value = stats.fisher_exact(table)
    return Outcome(f"Fisher: {what} share", float(statistic), float(p_value))


def combined(outcomes: Sequence[Outcome]) -> Outcome:
    """The sub-test with the smallest p-value, its p-value times their number (Bonferroni)."""
    best = min(outcomes, key=lambda outcome: outcome.p_value)
    return Outcome(best.test, best.statistic, min(1.0, best.p_value * len(outcomes)))


def holm_adjusted(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values: reject those <= alpha for family-wise level alpha."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    adjusted = [1.0] * len(p_values)
    running = 0.0
    for rank, index in enumerate(order):
        running = max(running, min(1.0, (len(p_values) - rank) * p_values[index]))
        adjusted[index] = running
    return adjusted


def total_variation(reference: Mapping[str, float], live: Mapping[str, float]) -> float:
    """Share of live traffic that would have to move bins to look like the reference."""
    ref_total, live_total = sum(reference.values()), sum(live.values())
    if ref_total <= 0 or live_total <= 0:
        return 0.0
    keys = set(reference) | set(live)
    return 0.5 * sum(
        abs(live.get(key, 0.0) / live_total - reference.get(key, 0.0) / ref_total) for key in keys
    )
