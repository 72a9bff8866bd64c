"""Subcommands of parameter sweeps: run the sweep as DVC experiments, tabulate it, promote a run."""

from __future__ import annotations

import argparse

from pr2prod import paths
from pr2prod.commands import arg, command


def _say(text: str) -> None:
    print(f"sweep: {text}", flush=True)


@command(
    "sweep",
    "run every combination of params.yaml's `sweep:` as a queued DVC experiment",
    arg("--workers", type=int, help="experiments run at once (default: sweep.workers, or cores)"),
)
def sweep(args: argparse.Namespace) -> int:
    import yaml

    from pr2prod.experiments.grid import sweep_runs
    from pr2prod.experiments.queue import (
        check_repository,
        default_workers,
        forget_earlier_runs,
        queue_runs,
        run_queue,
    )
    from pr2prod.settings import load_settings

    baseline = check_repository()
    runs = sweep_runs(paths.PARAMS)
    workers = args.workers or load_settings().sweep.workers or default_workers()
    _say(f"{len(runs)} runs on top of {baseline[:8]}, {workers} at a time")
    forget_earlier_runs(runs)
    queue_runs(runs, yaml.safe_load(paths.PARAMS.read_text()), _say)
    failed = run_queue(runs, workers, paths.SWEEP_LOG, _say)
    _say("`make sweep-report` writes the table")
    return 1 if failed == len(runs) else 0


@command(
    "sweep-report",
    "the sweep's runs against a base revision: report/sweep/sweep.md and sweep.json",
    arg("--base", help="git revision to compare with (default: as `pr2prod report`)"),
)
def sweep_report(args: argparse.Namespace) -> int:
    from pr2prod.dvc_tools import run_dvc
    from pr2prod.experiments.grid import sweep_runs
    from pr2prod.experiments.queue import check_repository, log_tail
    from pr2prod.experiments.render import table_json, table_markdown
    from pr2prod.experiments.results import show_experiments
    from pr2prod.experiments.table import build_table
    from pr2prod.report.revisions import default_base
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    baseline = check_repository()
    base = args.base or default_base()
    runs = sweep_runs(paths.PARAMS)
    print(f"sweep-report: {len(runs)} runs on {baseline[:8]} against {base or 'no base'} ...")
    table = build_table(
        runs,
        show_experiments(baseline),
        load_settings(),
        load_schema(paths.SCHEMA),
        base,
        baseline,
        failed_log=lambda name: log_tail(run_dvc("queue", "logs", name, check=False).stdout),
    )
    paths.SWEEP_DIR.mkdir(parents=True, exist_ok=True)
    paths.SWEEP_MD.write_text(table_markdown(table))
    paths.SWEEP_JSON.write_text(table_json(table))
    best = next((row.name for row in table.rows if row.best), None)
    print(f"sweep-report: best run: {best or 'none qualifies'}")
    print(f"sweep-report: wrote {paths.SWEEP_MD} and {paths.SWEEP_JSON}")
    return 0


@command(
    "promote",
    "apply one experiment of the sweep to the branch and commit it (pushed when remotes exist)",
    arg("name", help="the experiment's name, as the sweep's table shows it (e.g. sweep-1)"),
)
def promote(args: argparse.Namespace) -> int:
    from pr2prod.experiments.promote import promote as promote_run

    promote_run(args.name, lambda text: print(f"promote: {text}", flush=True))
    return 0
