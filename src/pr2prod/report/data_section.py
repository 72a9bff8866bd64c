"""The report's data section: did the data change, and if so, how."""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import dvc.api
import pandas as pd
import yaml

from pr2prod import paths
from pr2prod.data.table import read_raw
from pr2prod.report.drift import FeatureDrift, feature_drift, label_shares
from pr2prod.report.revisions import read_at
from pr2prod.schema import FeatureSchema


@dataclass(frozen=True)
class DataSection:
    changed: bool
    base_hash: str | None
    head_hash: str | None
    base_rows: int | None = None
    head_rows: int | None = None
    validation_passed: bool | None = None
    validation_failures: list[dict] = field(default_factory=list)
    labels: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)
    drift: list[FeatureDrift] = field(default_factory=list)
    note: str = ""


def data_hash(data_dvc_text: str | None) -> str | None:
    if not data_dvc_text:
        return None
    outs = (yaml.safe_load(data_dvc_text) or {}).get("outs") or [{}]
    return outs[0].get("md5")


def describe_data(
    base: str | None,
    data_file: Path,
    base_data_file: Path | None,
    schema: FeatureSchema,
    drift_threshold: float,
) -> DataSection:
    validation = _validation(read_at(None, paths.VALIDATION_REPORT))
    base_hash = data_hash(read_at(base, paths.DATA_DVC)) if base else None
    head_hash = data_hash(read_at(None, paths.DATA_DVC))
    common = {
        "base_hash": base_hash,
        "head_hash": head_hash,
        "head_rows": validation.get("rows"),
        "validation_passed": validation.get("valid"),
        "validation_failures": validation.get("failures", []),
    }
    if base is None or base_hash == head_hash:
        return DataSection(changed=False, **common)
    base_validation = _validation(read_at(base, paths.VALIDATION_REPORT))
    head_frame = _head_frame(data_file, schema)
    base_frame, note = _base_frame(base, base_data_file, schema)
    labels: dict[str, tuple[float | None, float | None]] = {}
    drift: list[FeatureDrift] = []
    if head_frame is not None and base_frame is not None:
        if not schema.target.is_numeric:  # a number has no label shares to compare
            before = label_shares(base_frame, schema.target.name)
            after = label_shares(head_frame, schema.target.name)
            labels = {label: (before.get(label), after.get(label)) for label in before | after}
        drift = feature_drift(base_frame, head_frame, schema, drift_threshold)
    return DataSection(
        changed=True,
        base_rows=base_validation.get("rows"),
        labels=labels,
        drift=drift,
        note=note,
        **common,
    )


def _validation(text: str | None) -> dict:
    return json.loads(text) if text else {}


def _head_frame(data_file: Path, schema: FeatureSchema) -> pd.DataFrame | None:
    try:
        return read_raw(data_file, schema)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return None  # the validation section already says what is wrong with the file


def _base_frame(
    base: str, base_data_file: Path | None, schema: FeatureSchema
) -> tuple[pd.DataFrame | None, str]:
    """The base revision's data, from the DVC cache or remote; or why it cannot be had."""
    if base_data_file is None:
        return None, "the base revision has no params.yaml naming its data file"
    try:
        with dvc.api.open(str(base_data_file), rev=base) as handle:
            text = handle.read()
    except Exception as error:  # DVC raises many types here: missing cache, remote, path
        return None, (
            f"the base data is neither in the DVC cache nor in a reachable remote "
            f"({type(error).__name__}); drift and label shares are not shown. "
            "Configure a DVC remote to compare data."
        )
    columns = set(schema.categorical_features)
    if not schema.target.is_numeric:
        columns.add(schema.target.name)
    frame = pd.read_csv(io.StringIO(text), dtype=dict.fromkeys(columns, str))
    return frame, ""
