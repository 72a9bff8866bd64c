"""What the steps print: one short progress line each, tables where a person compares figures."""

from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from pr2prod.data.validation import ValidationReport


def describe_validation(report: ValidationReport) -> str:
    if report.valid:
        return (
            f"validate: {report.file}: {report.rows} rows, {report.columns} columns, all rules pass"
        )
    rows = [
        [
            failure.column or "(table)",
            failure.rule,
            failure.rows,
            ", ".join(failure.examples) or failure.detail,
            ", ".join(map(str, failure.lines)),
        ]
        for failure in report.failures
    ]
    table = tabulate(rows, headers=["column", "rule", "rows", "examples", "lines"])
    return (
        f"validate: {report.file}: {len(report.failures)} rule(s) broken\n\n{table}\n\n"
        "Fix the data, or if the data is right, update schema.yaml. "
        "The full report is in results/validation.json."
    )


def describe_metrics(metrics_path: Path) -> str:
    figures = json.loads(metrics_path.read_text())
    overall = [[name, value] for name, value in figures.items() if name != "per_class"]
    per_class = [
        [label, row["precision"], row["recall"], row["f1"], row["support"]]
        for label, row in figures.get("per_class", {}).items()
    ]
    tables = [tabulate(overall, headers=["metric", "value"])]
    if per_class:  # a regressor's metrics have no classes
        tables.append(
            tabulate(per_class, headers=["class", "precision", "recall", "f1", "support"])
        )
    return "\n\n".join(tables)
