"""Reading the raw CSV: structural checks first, then a typed DataFrame.

Structure (is it a CSV at all, do all lines have as many fields as the header)
is checked here because pandas silently pads short lines with missing values.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from pr2prod.schema import FeatureSchema


@dataclass(frozen=True)
class Failure:
    """One broken rule: which column (None for the whole table), how many rows, examples."""

    rule: str
    column: str | None
    rows: int
    examples: list[str] = field(default_factory=list)
    lines: list[int] = field(default_factory=list)  # 1-based line numbers in the CSV file
    detail: str = ""


MAX_EXAMPLES = 5


def check_structure(path: Path) -> list[Failure]:
    """Problems that stop the file from being read as a table at all."""
    if not path.is_file():
        return [Failure(rule="file_exists", column=None, rows=0, detail=f"{path} does not exist")]
    with path.open(newline="") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or not any(name.strip() for name in header):
            return [Failure(rule="not_empty", column=None, rows=0, detail=f"{path} is empty")]
        ragged_lines: list[int] = []
        ragged_examples: list[str] = []
        for row in reader:
            if not row:
                continue  # blank lines are skipped by pandas too
            if len(row) != len(header):
                ragged_lines.append(reader.line_num)
                if len(ragged_examples) < MAX_EXAMPLES:
                    ragged_examples.append(f"line {reader.line_num}: {len(row)} fields")
    if ragged_lines:
        return [
            Failure(
                rule="field_count",
                column=None,
                rows=len(ragged_lines),
                examples=ragged_examples,
                lines=ragged_lines[:MAX_EXAMPLES],
                detail=f"the header has {len(header)} fields; truncated or ragged lines",
            )
        ]
    return []


def read_raw(path: Path, schema: FeatureSchema) -> pd.DataFrame:
    """The CSV as pandas reads it, text columns kept as text (no type coercion yet)."""
    text_columns = set(schema.categorical_features)
    if not schema.target.is_numeric:
        text_columns.add(schema.target.name)
    # Reading categories as text keeps codes like "01" or "1" from turning into numbers.
    return pd.read_csv(path, dtype=dict.fromkeys(text_columns, str))
