"""Writing a model bundle from the DVC pipeline's outputs (pr2prod.serving.bundle reads it).

Picking the golden rows reads a split file through the pipeline's typed loader, which is
why writing lives here, outside the service's code: the service never reads a split.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd

from pr2prod.data.records import split_records
from pr2prod.schema import FeatureSchema
from pr2prod.serving.bundle import (
    CARD_FILE,
    GOLDEN_FILE,
    METRICS_FILE,
    MODEL_FILE,
    POLICY_FILE,
    SCHEMA_FILE,
)
from pr2prod.serving.policy import ServingPolicy

GOLDEN_ROWS = 8


def write_bundle(
    directory: Path,
    model_file: Path,
    card_file: Path,
    schema_file: Path,
    metrics_file: Path,
    policy: ServingPolicy,
    test_file: Path,
    predictions_file: Path,
    schema: FeatureSchema,
) -> None:
    """Fill a (new, empty) model directory from the DVC pipeline's outputs."""
    for source, name in (
        (model_file, MODEL_FILE),
        (card_file, CARD_FILE),
        (schema_file, SCHEMA_FILE),
        (metrics_file, METRICS_FILE),
    ):
        (directory / name).write_bytes(source.read_bytes())
    (directory / POLICY_FILE).write_text(json.dumps(dataclasses.asdict(policy), indent=2))
    (directory / GOLDEN_FILE).write_text(
        json.dumps(golden_rows(test_file, predictions_file, schema), indent=2)
    )


def golden_rows(test_file: Path, predictions_file: Path, schema: FeatureSchema) -> dict:
    """The first test rows with the probabilities `evaluate` recorded for them."""
    records = split_records(test_file, schema)[:GOLDEN_ROWS]
    predictions = pd.read_csv(predictions_file).head(GOLDEN_ROWS)
    columns = [f"proba_{label}" for label in schema.target.classes]
    return {"records": records, "probabilities": predictions[columns].to_numpy().tolist()}
