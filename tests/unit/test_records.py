"""Test rows as request records: features only, missing values as null, plain Python values."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from conftest import FIXTURES

from pr2prod.data.records import request_records, split_records
from pr2prod.schema import DatasetRules, Feature, FeatureSchema, Target, load_schema

SCHEMA = FeatureSchema(
    features=(Feature("count", "numeric"), Feature("colour", "categorical")),
    target=Target("y", ("a", "b")),
    rules=DatasetRules(),
)


def test_missing_values_become_null_and_numpy_scalars_python_values() -> None:
    frame = pd.DataFrame(
        {
            "count": np.array([3, 4], dtype="int64"),
            "colour": ["red", None],
            "y": ["a", "b"],
        }
    ).astype({"colour": "category"})
    frame.loc[1, "count"] = np.nan  # the column turns float64, as a read CSV would

    records = request_records(frame, SCHEMA)

    assert records == [{"count": 3.0, "colour": "red"}, {"count": None, "colour": None}]
    assert all(type(record["count"]) in (float, type(None)) for record in records)


def test_a_split_file_reads_in_its_types_and_travels_as_strict_json() -> None:
    schema = load_schema(FIXTURES / "mixed" / "schema.yaml")

    records = split_records(FIXTURES / "mixed" / "loans.csv", schema)

    assert len(records) == len(pd.read_csv(FIXTURES / "mixed" / "loans.csv"))
    assert all(list(record) == schema.feature_names for record in records)
    assert any(record["age"] is None for record in records)
    assert any(record["employment"] is None for record in records)
    assert {record["grade"] for record in records} <= {"1", "2", "3"}  # codes stay text
    json.dumps(records, allow_nan=False)  # raises on any NaN left
