"""Check the raw data against the feature schema with pandera, and report every problem.

Column rules (type, nulls, ranges, categories, required and unexpected columns) come
from a pandera schema derived from schema.yaml; rules about the table as a whole
(enough rows, duplicate share, every class present) are checked alongside.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd
import pandera.pandas as pa

from pr2prod.data.table import MAX_EXAMPLES, Failure, check_structure, read_raw
from pr2prod.errors import Pr2prodError
from pr2prod.schema import Feature, FeatureSchema


@dataclass(frozen=True)
class ValidationReport:
    file: str
    rows: int
    columns: int
    failures: list[Failure]

    @property
    def valid(self) -> bool:
        return not self.failures

    def without_values(self) -> ValidationReport:
        """The report quoting no cell of the data (`privacy.raw_values: false`): every rule,
        column, row count and line number stays, so a failure can still be found and fixed
        by someone who has the file."""
        failures = [
            dataclasses.replace(failure, examples=[]) if failure.column else failure
            for failure in self.failures
        ]
        return dataclasses.replace(self, failures=failures)

    def to_json(self) -> str:
        body = {"valid": self.valid, **asdict(self)}
        return json.dumps(body, indent=2) + "\n"


def pandera_schema(schema: FeatureSchema) -> pa.DataFrameSchema:
    """The column rules of schema.yaml as a pandera schema (coercing to the declared types)."""
    columns = {feature.name: _column(feature) for feature in schema.features}
    target = schema.target
    columns[target.name] = (
        _column(target.as_feature())
        if target.is_numeric
        else pa.Column(str, pa.Check.isin(list(target.classes)), nullable=False, coerce=True)
    )
    return pa.DataFrameSchema(columns, strict=True)


def _column(feature: Feature) -> pa.Column:
    if feature.is_numeric:
        checks = []
        if feature.min is not None:
            checks.append(pa.Check.ge(feature.min))
        if feature.max is not None:
            checks.append(pa.Check.le(feature.max))
        return pa.Column(float, checks, nullable=feature.nullable, coerce=True)
    return pa.Column(
        str, pa.Check.isin(list(feature.categories)), nullable=feature.nullable, coerce=True
    )


def validate_file(path: Path, schema: FeatureSchema) -> ValidationReport:
    structural = check_structure(path)
    if structural:
        return ValidationReport(file=str(path), rows=0, columns=0, failures=structural)
    frame = read_raw(path, schema)
    failures = column_failures(frame, schema) + table_failures(frame, schema)
    return ValidationReport(
        file=str(path), rows=len(frame), columns=len(frame.columns), failures=failures
    )


def load_typed(path: Path, schema: FeatureSchema) -> pd.DataFrame:
    """Read a file that passed validation, with every column in its declared type."""
    try:
        return pandera_schema(schema).validate(read_raw(path, schema))
    except (pa.errors.SchemaError, pd.errors.ParserError, pd.errors.EmptyDataError) as error:
        raise Pr2prodError(
            f"{path} does not match schema.yaml: {error}",
            hint="run `pr2prod validate` (or `make validate`) for the full report",
        ) from error


def column_failures(frame: pd.DataFrame, schema: FeatureSchema) -> list[Failure]:
    try:
        pandera_schema(schema).validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        return _summarise(errors.failure_cases)
    return []


# pandera's names for "the column is missing" / "the column is not in the schema".
_SCHEMA_LEVEL_RULES = {
    "column_in_dataframe": "missing_column",
    "column_in_schema": "unexpected_column",
}


def _summarise(cases: pd.DataFrame) -> list[Failure]:
    failures: list[Failure] = []
    uncoercible = set(cases.loc[cases["check"].str.startswith("coerce_dtype"), "column"])
    for (column, check), group in cases.groupby(["column", "check"], dropna=False, sort=False):
        if column in uncoercible and not str(check).startswith(("coerce_dtype", "not_nullable")):
            # Once values cannot be read as the declared type, the range and dtype checks
            # that follow only repeat the same problem with less helpful messages.
            continue
        if check in _SCHEMA_LEVEL_RULES:
            for name in group["failure_case"]:
                failures.append(Failure(rule=_SCHEMA_LEVEL_RULES[check], column=str(name), rows=0))
            continue
        indexes = [int(i) for i in group["index"].dropna()]
        failures.append(
            Failure(
                rule=str(check),
                column=str(column),
                rows=len(group),
                examples=_examples(group["failure_case"]),
                lines=[i + 2 for i in indexes[:MAX_EXAMPLES]],  # +1 header, +1 one-based
            )
        )
    return failures


def _examples(values: pd.Series) -> list[str]:
    return [str(value) for value in pd.unique(values.astype(str))[:MAX_EXAMPLES]]


def table_failures(frame: pd.DataFrame, schema: FeatureSchema) -> list[Failure]:
    failures: list[Failure] = []
    rules = schema.rules
    if len(frame) < rules.min_rows:
        failures.append(
            Failure(
                rule="min_rows",
                column=None,
                rows=len(frame),
                detail=f"{len(frame)} data rows; the schema asks for at least {rules.min_rows}",
            )
        )
    duplicated = frame.duplicated()
    if len(frame) and duplicated.mean() > rules.max_duplicate_share:
        lines = [int(i) + 2 for i in frame.index[duplicated][:MAX_EXAMPLES]]
        failures.append(
            Failure(
                rule="max_duplicate_share",
                column=None,
                rows=int(duplicated.sum()),
                lines=lines,
                detail=(
                    f"{duplicated.mean():.1%} of rows repeat an earlier row; "
                    f"at most {rules.max_duplicate_share:.1%} allowed"
                ),
            )
        )
    target = schema.target
    if target.name in frame.columns and len(frame) and not target.is_numeric:
        absent = [label for label in target.classes if not (frame[target.name] == label).any()]
        if absent:
            failures.append(
                Failure(
                    rule="all_classes_present",
                    column=target.name,
                    rows=0,
                    examples=absent,
                    detail=f"no rows for class(es) {', '.join(absent)}",
                )
            )
    return failures
