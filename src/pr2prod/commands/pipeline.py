"""Subcommands around the DVC pipeline: its data, `dvc repro`, checking and summing up results,
and keeping the locked environment it runs in current.

The stages themselves are in pr2prod.commands.stages.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pr2prod import paths
from pr2prod.commands import arg, command
from pr2prod.errors import Pr2prodError


@command("data", "put the data recorded in data.dvc into data/ (pull or embedded sample)")
def data(_: argparse.Namespace) -> int:
    from pr2prod.data.fetch import fetch_data

    print(fetch_data())
    return 0


@command("repro", "dvc repro, recording which stages ran (for the report)")
def repro(_: argparse.Namespace) -> int:
    from pr2prod.per_row_files import DVC_YAML, check_per_row_files
    from pr2prod.repro import reproduce
    from pr2prod.settings import load_settings

    check_per_row_files(load_settings().privacy, DVC_YAML.read_text())
    return reproduce(paths.REPRO_RECORD)


@command("verify", "fail when the reproduced dvc.lock or metrics differ from HEAD's")
def verify(_: argparse.Namespace) -> int:
    from pr2prod.report.gate import REPRODUCE_AND_COMMIT
    from pr2prod.report.reproducibility import check_reproducibility

    result = check_reproducibility(paths.REPRO_RECORD)
    if not result.committed:
        raise Pr2prodError("HEAD has no dvc.lock to compare with", hint="commit dvc.lock")
    if result.matches:
        print("verify: the reproduced dvc.lock and metrics are exactly the committed ones")
        return 0
    differences = "\n".join(
        f"  {line}" for line in [*result.lock_differences, *result.metric_differences]
    )
    print(
        f"verify: what was reproduced differs from what was committed:\n{differences}\n"
        f"The commit does not hold the results of its own pipeline: {REPRODUCE_AND_COMMIT}.",
        file=sys.stderr,
    )
    return 1


@command("summary", "print the latest metrics and where the results are")
def summary(_: argparse.Namespace) -> int:
    from pr2prod.console import describe_metrics
    from pr2prod.schema import load_schema

    if not paths.METRICS.is_file():
        raise Pr2prodError(f"{paths.METRICS} not found", hint="run `make run` first")
    print(describe_metrics(paths.METRICS))
    numeric = load_schema(paths.SCHEMA).target.is_numeric
    plots = "predicted and actual values" if numeric else "ROC and precision-recall data"
    print(
        f"\nResults: {paths.METRICS} (metrics), {paths.PREDICTIONS} (per-row test predictions),"
        f" {paths.RESULTS}/plots/ ({plots}), {paths.MODEL} (the model)."
        "\nPlots: `dvc plots show` writes them to dvc_plots/index.html."
    )
    return 0


@command(
    "propose-lock",
    "open or update the pull request that moves the lock files to their re-locked contents",
    arg("files", nargs="+", type=Path, help="the lock files `make lock` writes"),
    arg("--base", default="main", help="the branch checked out here (default: main)"),
)
def propose_lock(args: argparse.Namespace) -> int:
    from pr2prod.github.api import GitHub
    from pr2prod.github.lock_update import propose_lock_update

    with GitHub.from_environment() as github:
        proposal = propose_lock_update(github, args.files, base=args.base)
    if proposal.url is None:
        print("propose-lock: the lock files are as committed; nothing to propose")
    else:
        done = "opened" if proposal.opened else "updated"
        changed = ", ".join(file.as_posix() for file in proposal.changed)
        print(f"propose-lock: {done} {proposal.url} ({changed})")
    return 0
