"""Golden rows: synthetic inputs, with the answers the trained model gives them.

A served model proves at start-up (readiness) and over HTTP (`make smoke`, the canary's
checks) that it answers these rows as the pipeline's model does. They ship in the image
and GET /model shows them to any caller, so they must not be anybody's record: each row
is built from summaries of the training split, never copied from it.

Per class, a row takes every numeric feature at one quantile of that class's training
values (the median first, then the quartiles, then the deciles) and every categorical
feature at one of its categories in that class (the most frequent first), so the rows
usually cover every class. For a numeric target the groups are the training rows in each
quarter of the target's range of values (by quantile), so the rows span low to high
answers; their answers are the model's values, not probabilities. A candidate that
equals a row of the data, or an earlier candidate, is dropped; seeded random mixes of
quantiles fill any gap, so the same training split, model and seed give the same rows.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pr2prod.data.records import json_value, request_records
from pr2prod.data.validation import load_typed
from pr2prod.model.artifact import load_pipeline_model
from pr2prod.schema import FeatureSchema
from pr2prod.serving.bundle import GOLDEN_PROBABILITIES, GOLDEN_VALUES
from pr2prod.serving.inference import PipelineRunner

GOLDEN_ROWS = 8
PROFILE_QUANTILES = (0.5, 0.25, 0.75, 0.1, 0.9)
DECIMALS = 6  # enough to tell quantiles apart, short enough to read
RANDOM_ATTEMPTS = 50  # per missing row, before settling for fewer rows
VALUE_GROUPS = 4  # a numeric target's groups of training rows: its quartiles


def golden_rows(
    train_file: Path, test_file: Path, model_file: Path, schema: FeatureSchema, seed: int
) -> dict[str, Any]:
    """Synthetic rows from the training split, with the model's answers for them."""
    train = load_typed(train_file, schema)
    real = pd.concat([train, load_typed(test_file, schema)], ignore_index=True)
    records = synthetic_records(train, real, schema, GOLDEN_ROWS, seed)
    # The pipeline's own model (the file evaluate scored), loaded once dvc.lock vouches
    # for it: recording its answers needs it in memory.
    model = PipelineRunner(load_pipeline_model(model_file), schema)
    if schema.target.is_numeric:
        return {
            "origin": "synthetic: quantiles of the training split per quarter of the "
            "target's values, no real row",
            "records": records,
            GOLDEN_VALUES: model.values(records).tolist(),
        }
    return {
        "origin": "synthetic: per-class quantiles of the training split, no real row",
        "records": records,
        GOLDEN_PROBABILITIES: model.probabilities(records).tolist(),
    }


def synthetic_records(
    train: pd.DataFrame, real: pd.DataFrame, schema: FeatureSchema, count: int, seed: int
) -> list[dict[str, Any]]:
    """Up to `count` records, none equal to a row of `real` (features compared)."""
    groups = [group for group in _target_groups(train, schema) if len(group)]
    taken = {_key(record, schema) for record in request_records(real, schema)}
    records: list[dict[str, Any]] = []

    def offer(record: dict[str, Any]) -> None:
        key = _key(record, schema)
        if len(records) < count and key not in taken:
            taken.add(key)
            records.append(record)

    for rank, quantile in enumerate(PROFILE_QUANTILES):
        for group in groups:
            offer(_profile(group, schema, lambda q=quantile: q, lambda _, r=rank: r))
    rng = np.random.default_rng(seed)
    for attempt in range(RANDOM_ATTEMPTS * count):
        if len(records) >= count:
            break
        group = groups[attempt % len(groups)]
        offer(
            _profile(
                group,
                schema,
                lambda: float(rng.uniform(0.05, 0.95)),
                lambda size: int(rng.integers(size)),
            )
        )
    return records


def _target_groups(train: pd.DataFrame, schema: FeatureSchema) -> list[pd.DataFrame]:
    """The training rows of each class; of a numeric target, of each quartile of its values."""
    target = train[schema.target.name]
    if not schema.target.is_numeric:
        return [train[target == label] for label in schema.target.classes]
    quarter = pd.qcut(target, VALUE_GROUPS, labels=False, duplicates="drop")
    return [train[quarter == group] for group in sorted(quarter.dropna().unique())]


def _profile(
    group: pd.DataFrame,
    schema: FeatureSchema,
    quantile_of: Callable[[], float],
    rank_of: Callable[[int], int],
) -> dict[str, Any]:
    """One record: each numeric feature at a quantile, each categorical one at a rank
    (of the categories seen in `group`, by frequency; `rank_of` gets how many there are)."""
    record: dict[str, Any] = {}
    for feature in schema.features:
        values = group[feature.name].dropna()
        if values.empty:
            record[feature.name] = None
        elif feature.is_numeric:
            record[feature.name] = round(float(values.quantile(quantile_of())), DECIMALS)
        else:
            by_frequency = values.astype(str).value_counts().sort_index(kind="stable")
            ordered = by_frequency.sort_values(ascending=False, kind="stable").index
            record[feature.name] = str(ordered[rank_of(len(ordered)) % len(ordered)])
    return record


def _key(record: dict[str, Any], schema: FeatureSchema) -> tuple:
    """A record's feature values, comparable whatever their source types."""
    return tuple(
        _comparable(json_value(record[name]), name in schema.numeric_features)
        for name in schema.feature_names
    )


def _comparable(value: Any, numeric: bool) -> Any:
    if value is None:
        return None
    return round(float(value), DECIMALS) if numeric else str(value)
