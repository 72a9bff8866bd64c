"""`pr2prod gate`: the verdict recorded in report.json, as an exit status and a table."""

from __future__ import annotations

import json
from pathlib import Path

from tabulate import tabulate

from pr2prod.errors import Pr2prodError


def gate_status(report_json: Path) -> tuple[bool, str]:
    if not report_json.is_file():
        raise Pr2prodError(f"{report_json} not found", hint="write the report first: `make report`")
    report = json.loads(report_json.read_text())
    verdict = report["verdict"]
    rows = [
        [rule["metric"], rule["check"], rule["value"], _word(rule["passed"])]
        for rule in report["gate"]
    ]
    table = tabulate(rows, headers=["metric", "rule", "found", ""]) if rows else ""
    headline = f"gate: {'passes' if verdict['passed'] else 'FAILS'}: {verdict['reason']}"
    return verdict["passed"], "\n\n".join(part for part in (headline, table) if part)


def _word(passed: bool | None) -> str:
    return {True: "pass", False: "FAIL", None: "n/a"}[passed]
