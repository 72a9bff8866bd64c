"""A sweep declared in params.yaml: its settings, its grid, the queue's state and its table."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from pr2prod.errors import Pr2prodError
from pr2prod.experiments.grid import (
    Run,
    check_runs_settings,
    expand_grid,
    override_value,
    queue_arguments,
)
from pr2prod.experiments.queue import check_repository, log_tail, progress, queue_states
from pr2prod.experiments.render import table_json, table_markdown
from pr2prod.experiments.results import RunRecord, read_experiments
from pr2prod.experiments.table import build_table
from pr2prod.github.sections import SWEEP_MARKER
from pr2prod.schema import load_schema
from pr2prod.settings import SweepSettings, load_settings, parse_settings

TEMPLATE = (REPO_ROOT / "params.yaml").read_text()


def with_sweep(sweep: str) -> str:
    """The template's params.yaml with its `sweep:` section replaced by `sweep`."""
    start = TEMPLATE.index("\nsweep:\n")
    end = TEMPLATE.index("\n\n", start + 1)
    return TEMPLATE[:start] + "\n" + sweep.strip("\n") + TEMPLATE[end:]


def sweep_problem(sweep: str) -> str:
    with pytest.raises(Pr2prodError) as raised:
        parse_settings(with_sweep(sweep), where="params.yaml")
    return str(raised.value)


def test_the_template_declares_a_three_by_three_grid() -> None:
    sweep = load_settings(REPO_ROOT / "params.yaml").sweep

    assert sweep.values() == {
        "train.hyperparameters.n_estimators": (50, 100, 200),
        "train.hyperparameters.max_depth": (4, 8, None),
    }
    assert (sweep.best.metric, sweep.best.require_gate, sweep.workers) == ("f1", True, 0)


def test_the_grid_is_every_combination_in_a_fixed_order_with_fixed_names() -> None:
    sweep = SweepSettings(params={"seed": [1, 2], "train.hyperparameters.max_depth": [4, None]})

    runs = expand_grid(sweep)

    assert [run.name for run in runs] == ["sweep-1", "sweep-2", "sweep-3", "sweep-4"]
    assert [dict(run.overrides) for run in runs] == [
        {"seed": 1, "train.hyperparameters.max_depth": 4},
        {"seed": 1, "train.hyperparameters.max_depth": None},
        {"seed": 2, "train.hyperparameters.max_depth": 4},
        {"seed": 2, "train.hyperparameters.max_depth": None},
    ]
    assert expand_grid(sweep) == runs


def test_ranges_include_both_ends_and_keep_decimal_steps_exact() -> None:
    sweep = SweepSettings(
        params={
            "train.hyperparameters.n_estimators": {"from": 50, "to": 200, "step": 50},
            "split.test_size": {"from": 0.1, "to": 0.3, "step": 0.1},
        }
    )

    assert sweep.values() == {
        "train.hyperparameters.n_estimators": (50, 100, 150, 200),
        "split.test_size": (0.1, 0.2, 0.3),
    }
    assert len(expand_grid(sweep)) == 12


def test_one_dvc_call_queues_the_grid_quoting_text_and_adding_keys_params_yaml_lacks() -> None:
    sweep = SweepSettings(
        params={
            "train.hyperparameters.max_depth": [None, 4],
            "train.hyperparameters.criterion": ["entropy", "gini"],
            "train.hyperparameters.bootstrap": [False],
        }
    )
    params = {"train": {"hyperparameters": {"max_depth": 8}}}

    assert queue_arguments(expand_grid(sweep), params) == [
        "--name",
        "sweep",  # DVC names the four sweep-1 to sweep-4, in expand_grid's order
        "-S",
        "train.hyperparameters.max_depth=null,4",
        "-S",
        '+train.hyperparameters.criterion="entropy","gini"',
        "-S",
        "+train.hyperparameters.bootstrap=false",
    ]
    single = expand_grid(SweepSettings(params={"seed": [3]}))
    assert queue_arguments(single, {"seed": 42}) == ["--name", "sweep-1", "-S", "seed=3"]
    assert [override_value(value) for value in (3, 0.25, "a b")] == ["3", "0.25", '"a b"']


@pytest.mark.parametrize(
    ("sweep", "message"),
    [
        ("sweep:\n  params: {canary.window_seconds: [1, 2]}", "not a setting a sweep can change"),
        ("sweep:\n  params: {seed: []}", "sweep.params.seed lists no values"),
        ("sweep:\n  params: {seed: [1, 1]}", "lists a value twice"),
        ("sweep:\n  params: {seed: 3}", "must be a list of values or a range, not 3"),
        ("sweep:\n  params: {seed: {from: 1, to: 3}}", "as a range must be {from: A, to: B"),
        ("sweep:\n  params: {seed: {from: 3, to: 1, step: 1}}", "must rise by a positive step"),
        ("sweep:\n  workers: -1", "sweep.workers must be 0 (one per core) or more"),
        ("sweep:\n  best: {metrc: f1}", "sweep.best.metrc is not a setting; did you mean"),
    ],
)
def test_a_malformed_sweep_is_named(sweep: str, message: str) -> None:
    assert message in sweep_problem(sweep)


def test_a_run_that_would_write_invalid_settings_is_refused_before_any_run() -> None:
    runs = expand_grid(SweepSettings(params={"split.test_size": [0.2, 1.5]}))

    with pytest.raises(Pr2prodError, match=r"sweep-2.*split.test_size must be between 0 and 1"):
        check_runs_settings(runs, TEMPLATE)


def test_without_a_declared_sweep_there_is_nothing_to_run() -> None:
    with pytest.raises(Pr2prodError, match="declares no sweep") as raised:
        expand_grid(SweepSettings())
    assert "docs/experiments.md" in raised.value.hint


QUEUE_STATUS = """\
Task     Name        Created    Status
9c9e4d0  sweep-1    03:58 AM   Success
4891b01  sweep-2    03:58 AM   Failed
6b7b878  sweep-3    04:01 AM   Running
28b6e8d  other       04:01 AM   Queued

Worker status: 1 active, 0 idle
"""


def test_the_queue_status_table_is_read_and_counted_for_the_sweeps_runs() -> None:
    states = queue_states(QUEUE_STATUS)
    runs = [Run(f"sweep-{index}", ()) for index in range(1, 5)]

    assert states == {
        "sweep-1": "Success",
        "sweep-2": "Failed",
        "sweep-3": "Running",
        "other": "Queued",
    }
    assert progress(runs, states).line() == "1 done, 1 running, 1 failed, 1 waiting"
    assert queue_states("No experiment tasks in the queue.\n") == {}


def test_a_log_tail_skips_blank_and_repeated_lines() -> None:
    log = "a\n\nERROR: x\nERROR: x\n" + "".join(f"line {n}\n" for n in range(20))

    assert log_tail(log, lines=3) == ["line 17", "line 18", "line 19"]
    assert log_tail("a\n\nERROR: x\nERROR: x\n") == ["a", "ERROR: x"]


def experiment(name: str, metrics: dict | None, error: str | None = None) -> dict:
    data = {
        "params": {"params.yaml": {"data": {"train": {"hyperparameters": {"max_depth": 4}}}}},
        "metrics": {"results/metrics.json": {"data": metrics}} if metrics else {},
    }
    revision = {"rev": f"{name}-rev", "name": name, "data": data}
    revision["error"] = {"msg": error, "type": ""} if error else None
    return {"name": name, "revs": [revision], "executor": None}


def show_json(*experiments: dict) -> str:
    return json.dumps(
        [
            {"rev": "workspace", "name": None, "experiments": None},
            {"rev": "abc", "name": "main", "experiments": list(experiments)},
            {"rev": "other", "name": None, "experiments": [experiment("elsewhere", {"f1": 1})]},
        ]
    )


def test_experiments_are_read_for_their_baseline_only() -> None:
    text = show_json(
        experiment("sweep-1", {"f1": 0.95, "per_class": {"a": {"f1": 0.9}}}),
        experiment("sweep-2", None, error="Experiment run failed"),
    )

    records = read_experiments(text, baseline="abc")

    assert sorted(records) == ["sweep-1", "sweep-2"]
    assert records["sweep-1"].status == "done"
    assert records["sweep-1"].metrics == {"f1": 0.95, "per_class.a.f1": 0.9}
    assert records["sweep-1"].params["train"]["hyperparameters"]["max_depth"] == 4
    assert (records["sweep-2"].status, records["sweep-2"].error) == (
        "failed",
        "Experiment run failed",
    )


GOOD = {"accuracy": 0.96, "f1": 0.95, "roc_auc": 0.99, "log_loss": 0.1}


def table_for(records: dict[str, RunRecord]) -> tuple[str, dict]:
    settings = load_settings(REPO_ROOT / "params.yaml")
    runs = expand_grid(settings.sweep)[:4]
    table = build_table(
        runs,
        records,
        settings,
        load_schema(REPO_ROOT / "schema.yaml"),
        base=None,
        baseline="0123456789abcdef",
        failed_log=lambda name: [f"{name}: Traceback", "ValueError: max_depth"],
    )
    return table_markdown(table), json.loads(table_json(table))


def test_the_table_marks_the_best_passing_run_and_lists_failed_runs_with_their_log() -> None:
    records = {
        "sweep-1": RunRecord("sweep-1", "done", "r1", metrics={**GOOD, "f1": 0.95}),
        # The highest f1, but under the gate's accuracy floor: not the best.
        "sweep-2": RunRecord(
            "sweep-2", "done", "r2", metrics={**GOOD, "f1": 0.99, "accuracy": 0.8}
        ),
        "sweep-3": RunRecord("sweep-3", "done", "r3", metrics={**GOOD, "f1": 0.97}),
        "sweep-4": RunRecord("sweep-4", "failed", "r4", error="Experiment run failed"),
    }

    markdown, body = table_for(records)

    assert markdown.startswith(SWEEP_MARKER)
    assert "4 runs, 3 done, 1 failed or missing; best: `sweep-3`" in markdown
    assert (
        "| **sweep-3** 🏆 | 50 | null | 0.9600 | 0.9700 | 0.9900 | 0.1000 | ✅ passes |" in markdown
    )
    assert "| sweep-2 | 50 | 8 | 0.8000 |" in markdown and "❌ fails" in markdown
    assert "- `sweep-2`: accuracy >= 0.9 (found 0.8000)" in markdown
    assert "| sweep-4 | 100 | 4 |  |  |  |  | ⚠️ failed |" in markdown
    assert "sweep-4: Traceback" in markdown and "ValueError: max_depth" in markdown
    rows = {row["name"]: row for row in body["rows"]}
    assert [name for name, row in rows.items() if row["best"]] == ["sweep-3"]
    assert rows["sweep-4"]["status"] == "failed"
    assert rows["sweep-4"]["log_tail"] == ["sweep-4: Traceback", "ValueError: max_depth"]


def test_a_run_missing_from_dvc_is_listed_as_not_run_and_the_table_is_repeatable() -> None:
    records = {"sweep-1": RunRecord("sweep-1", "done", "r1", metrics=GOOD)}

    first, second = table_for(records), table_for(records)

    assert first == second
    assert "| sweep-2 | 50 | 8 |  |  |  |  | ⚠️ not run |" in first[0]
    assert "no experiment of this name on this commit: run `make sweep`" in first[0]


def test_no_run_is_best_when_none_passes_the_gate() -> None:
    failing = {**GOOD, "roc_auc": 0.5}
    records = {name: RunRecord(name, "done", name, metrics=failing) for name in ("sweep-1",)}

    markdown, body = table_for(records)

    assert "no run qualifies as best" in markdown
    assert not any(row["best"] for row in body["rows"])


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True)


def test_a_sweep_refuses_a_shallow_clone_or_a_repository_without_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    origin = tmp_path / "origin"
    origin.mkdir()
    git("init", "--quiet", "--initial-branch=main", cwd=origin)
    monkeypatch.chdir(origin)
    with pytest.raises(Pr2prodError, match="no commit yet") as raised:
        check_repository()
    assert "git commit" in raised.value.hint

    for number in (1, 2):
        (origin / "file").write_text(f"{number}\n")
        git("add", "file", cwd=origin)
        git("commit", "--quiet", "-m", f"commit {number}", cwd=origin)
    git("clone", "--quiet", "--depth=1", f"file://{origin}", "shallow", cwd=tmp_path)
    monkeypatch.chdir(tmp_path / "shallow")
    with pytest.raises(Pr2prodError, match="shallow clone") as raised:
        check_repository()
    assert "git fetch --unshallow" in raised.value.hint and "fetch-depth: 0" in raised.value.hint

    git("fetch", "--quiet", "--unshallow", cwd=tmp_path / "shallow")
    assert len(check_repository()) == 40
