"""The data fault catalogue: ways real data goes wrong, each injected into a copy of the sample CSV.

Each fault names the column (None for the whole table) and the rule that must catch it.
Shared by the unit tests (validation in-process) and the integration tests (`dvc repro`).
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd


@dataclass(frozen=True)
class DataFault:
    name: str
    inject: Callable[[str], str]  # sample CSV text -> broken CSV text
    column: str | None
    rule: str


def _frame(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def _text(frame: pd.DataFrame) -> str:
    return frame.to_csv(index=False, lineterminator="\n")


def _edit(change: Callable[[pd.DataFrame], pd.DataFrame]) -> Callable[[str], str]:
    return lambda text: _text(change(_frame(text)))


def _set(column: str, rows: list[int], value: str) -> Callable[[str], str]:
    def change(frame: pd.DataFrame) -> pd.DataFrame:
        frame.loc[rows, column] = value
        return frame

    return _edit(change)


def _truncate_line(text: str) -> str:
    lines = text.splitlines(keepends=True)
    lines[10] = lines[10][: len(lines[10]) // 2] + "\n"  # a line cut off mid-way
    return "".join(lines)


DATA_FAULTS = [
    DataFault(
        "missing column",
        _edit(lambda f: f.drop(columns="mean_radius")),
        "mean_radius",
        "missing_column",
    ),
    DataFault(
        "extra column", _edit(lambda f: f.assign(patient_id="x")), "patient_id", "unexpected_column"
    ),
    DataFault(
        "wrong dtype",
        _set("mean_texture", [3, 4], "n/a?"),
        "mean_texture",
        "coerce_dtype('float64')",
    ),
    DataFault(
        "nulls in a non-nullable column",
        _set("mean_area", [0, 1, 2], ""),
        "mean_area",
        "not_nullable",
    ),
    DataFault(
        "value out of range",
        _set("mean_radius", [5], "-3.5"),
        "mean_radius",
        "greater_than_or_equal_to(0.0)",
    ),
    DataFault(
        "unseen category",
        _set("diagnosis", [7], "borderline"),
        "diagnosis",
        "isin(['malignant', 'benign'])",
    ),
    DataFault(
        "duplicate rows over the allowed share",
        _edit(lambda f: pd.concat([f, f.head(30)], ignore_index=True)),
        None,
        "max_duplicate_share",
    ),
    DataFault("empty file", lambda text: "", None, "not_empty"),
    DataFault("header only", lambda text: text.splitlines(keepends=True)[0], None, "min_rows"),
    DataFault("truncated line", _truncate_line, None, "field_count"),
    DataFault("missing target values", _set("diagnosis", [2, 9], ""), "diagnosis", "not_nullable"),
    DataFault(
        "a class absent from the target",
        _edit(lambda f: f[f["diagnosis"] != "malignant"]),
        "diagnosis",
        "all_classes_present",
    ),
]
