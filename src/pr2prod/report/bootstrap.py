"""Confidence intervals for metric deltas by bootstrapping the test set.

Paired when both models predicted the same test rows (the same row ids, each row's place
in the test split, with the same labels; see pr2prod.model.evaluate.row_ids): each draw
resamples rows once and scores both models on them, so row-to-row difficulty cancels
out. Otherwise the two test sets are resampled independently (a wider, unpaired interval).
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import Literal

import numpy as np
import pandas as pd

from pr2prod.model.metrics import classification_metrics, flatten_metrics
from pr2prod.model.regression_metrics import regression_metrics

Pairing = Literal["paired", "unpaired"]


@dataclass(frozen=True)
class Predictions:
    """Per-row test predictions of one model (results/predictions.csv): classes with their
    probabilities, or (`numeric`) predicted values."""

    frame: pd.DataFrame
    classes: list[str]
    positive_class: str | None
    numeric: bool = False

    @classmethod
    def from_csv(cls, text: str, positive_class: str | None, numeric: bool = False) -> Predictions:
        types = {"row_id": str} if numeric else {"row_id": str, "actual": str}
        frame = pd.read_csv(io.StringIO(text), dtype=types)
        classes = [column.removeprefix("proba_") for column in frame if column.startswith("proba_")]
        return cls(frame.sort_values("row_id", ignore_index=True), classes, positive_class, numeric)

    @property
    def probabilities(self) -> np.ndarray:
        return self.frame[[f"proba_{label}" for label in self.classes]].to_numpy()

    def metrics(self, rows: np.ndarray) -> dict[str, float]:
        if self.numeric:
            actual, predicted = (
                self.frame[name].to_numpy(float) for name in ("actual", "predicted")
            )
            return flatten_metrics(regression_metrics(actual[rows], predicted[rows]))
        figures = classification_metrics(
            self.frame["actual"].to_numpy()[rows],
            self.probabilities[rows],
            self.classes,
            self.positive_class,
        )
        return flatten_metrics(figures)


@dataclass(frozen=True)
class DeltaIntervals:
    pairing: Pairing
    note: str
    intervals: dict[str, tuple[float, float]]


def delta_intervals(
    base: Predictions,
    head: Predictions,
    resamples: int,
    confidence: float,
    seed: int,
    same_test_split: bool | None = None,
) -> DeltaIntervals:
    """`same_test_split`: whether dvc.lock records the same test split file for both (None:
    unknown). Row ids are places, so only the same split makes equal ids the same rows."""
    rng = np.random.default_rng(seed)
    same_rows = (
        same_test_split is not False
        and base.frame["row_id"].equals(head.frame["row_id"])
        and base.frame["actual"].equals(head.frame["actual"])
    )
    if same_rows:
        pairing: Pairing = "paired"
        note = f"paired bootstrap over the same {len(head.frame)} test rows"
    else:
        pairing = "unpaired"
        # Row ids are places in the test split, not identities: ids two different test
        # sets share say nothing about common rows, so none are counted.
        note = (
            f"unpaired bootstrap: the test sets differ ({len(base.frame)} base rows, "
            f"{len(head.frame)} PR rows)"
        )
    deltas: dict[str, list[float]] = {}
    for _ in range(resamples):
        head_rows = rng.integers(0, len(head.frame), len(head.frame))
        base_rows = head_rows if same_rows else rng.integers(0, len(base.frame), len(base.frame))
        head_figures, base_figures = head.metrics(head_rows), base.metrics(base_rows)
        for name in head_figures.keys() & base_figures.keys():
            deltas.setdefault(name, []).append(head_figures[name] - base_figures[name])
    tail = (1 - confidence) / 2 * 100
    intervals = {
        name: (float(np.nanpercentile(values, tail)), float(np.nanpercentile(values, 100 - tail)))
        for name, values in deltas.items()
        if not np.isnan(values).all()
    }
    return DeltaIntervals(pairing, f"{note}, {resamples} resamples", intervals)
