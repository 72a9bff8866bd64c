"""`pr2prod prepare`: a deterministic, seeded, stratified train/test split.

A class target is stratified on its classes; a numeric one on quantile bins of its value,
so both splits cover its whole range (a random split of a small set can leave the test
rows without the largest or smallest values).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from pr2prod.data.validation import load_typed
from pr2prod.schema import FeatureSchema
from pr2prod.settings import Settings


def split_dataset(
    settings: Settings, schema: FeatureSchema, train_path: Path, test_path: Path
) -> tuple[int, int]:
    """Write the train and test CSVs; return their row counts."""
    frame = load_typed(settings.data.file, schema)
    train, test = train_test_split(
        frame,
        test_size=settings.split.test_size,
        random_state=settings.seed,
        stratify=strata(frame[schema.target.name], schema, settings.split.test_size),
    )
    for part, path in ((train, train_path), (test, test_path)):
        _write_csv(part, path)
    return len(train), len(test)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")


# Quantile bins of a numeric target: at most this many, and at least this many test rows
# (and so training rows) expected in each, so every bin can be split.
MAX_TARGET_BINS = 10
MIN_ROWS_PER_BIN_AND_SIDE = 2


def strata(target: pd.Series, schema: FeatureSchema, test_size: float) -> pd.Series | None:
    """What the split is stratified on: the classes, or quantile bins of a number (None:
    too few rows for two bins)."""
    if not schema.target.is_numeric:
        return target
    smaller_side = min(test_size, 1 - test_size) * len(target)
    bins = min(MAX_TARGET_BINS, int(smaller_side // MIN_ROWS_PER_BIN_AND_SIDE))
    if bins < 2:
        return None
    # Ties can merge quantiles (a target with few distinct values): fewer bins, not an error.
    return pd.qcut(target, q=bins, labels=False, duplicates="drop")
