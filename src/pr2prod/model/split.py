"""`pr2prod prepare`: a deterministic, seeded, stratified train/test split."""

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
        stratify=frame[schema.target.name],
    )
    for part, path in ((train, train_path), (test, test_path)):
        _write_csv(part, path)
    return len(train), len(test)


def _write_csv(frame: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
