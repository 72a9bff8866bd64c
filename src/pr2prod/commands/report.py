"""Subcommands of the pull-request report: compare with a base revision, and the gate."""

from __future__ import annotations

import argparse
import sys

from pr2prod import paths
from pr2prod.commands import arg, command


@command(
    "report",
    "compare the workspace with a base revision: report/report.md",
    arg(
        "--base",
        help="git revision to compare with (default: the PR's base branch, main, "
        "or the previous commit on main)",
    ),
)
def report(args: argparse.Namespace) -> int:
    from pr2prod.report.build import build_report
    from pr2prod.report.render import to_json, to_markdown
    from pr2prod.report.revisions import default_base

    base = args.base or default_base()
    print(f"report: comparing the workspace with {base or 'nothing (no base revision)'} ...")
    built = build_report(base, paths.REPORT_DIR)
    paths.REPORT_DIR.mkdir(parents=True, exist_ok=True)
    paths.REPORT_MD.write_text(to_markdown(built))
    paths.REPORT_JSON.write_text(to_json(built))
    verdict = "passes" if built.verdict.passed else "fails"
    print(f"report: the quality gate {verdict}: {built.verdict.reason}")
    print(f"report: wrote {paths.REPORT_MD} and {paths.REPORT_JSON}")
    return 0


@command("gate", "exit non-zero when the report's quality gate fails")
def gate(_: argparse.Namespace) -> int:
    from pr2prod.report.gate_status import gate_status

    passed, summary = gate_status(paths.REPORT_JSON)
    print(summary, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1
