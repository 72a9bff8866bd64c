"""`make sweep`, `make sweep-report` and `make promote` on a real repository: DVC's queue,
a run that fails, a rerun giving the same table, and the promoted run's usual report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import run

pytestmark = pytest.mark.integration

# Two runs, one of which cannot train (max_depth must be 1 or more); small forests and
# fewer bootstrap draws keep the test short.
SWEEP = {
    "params": {
        "train.hyperparameters.n_estimators": [20],
        "train.hyperparameters.max_depth": [4, 0],
    },
    "best": {"metric": "f1", "require_gate": True},
    "workers": 2,
}


def sweep_branch(project: Path) -> None:
    """main as copied; branch `pr` declares the test's sweep and commits it."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["sweep"] = SWEEP
    params["report"]["bootstrap_resamples"] = 200
    run("git", "checkout", "--quiet", "-b", "pr", cwd=project)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("git", "commit", "--quiet", "-am", "declare a sweep", cwd=project)


def sweep_and_tabulate(project: Path) -> tuple[str, str, str]:
    swept = run("make", "sweep", "VENV=", cwd=project).stdout
    run("make", "sweep-report", "BASE=main", "VENV=", cwd=project)
    folder = project / "report" / "sweep"
    return swept, (folder / "sweep.md").read_text(), (folder / "sweep.json").read_text()


def test_a_sweep_gives_a_repeatable_table_and_its_best_run_is_promoted(project: Path) -> None:
    sweep_branch(project)

    swept, markdown, table = sweep_and_tabulate(project)

    assert "sweep: 2 runs on top of" in swept and "2 at a time" in swept
    assert "sweep-2 failed (train.hyperparameters.n_estimators=20, " in swept
    assert "The 'max_depth' parameter of RandomForestClassifier" in swept
    assert "finished in" in swept and "1 done, 1 failed" in swept
    rows = {row["name"]: row for row in json.loads(table)["rows"]}
    assert rows["sweep-1"]["status"] == "done" and rows["sweep-1"]["best"]
    assert rows["sweep-1"]["params"] == {
        "train.hyperparameters.n_estimators": "20",
        "train.hyperparameters.max_depth": "4",
    }
    for name in ("accuracy", "f1", "roc_auc", "log_loss"):
        cell = rows["sweep-1"]["metrics"][name]
        low, high = cell["interval"]
        assert low <= cell["delta"] <= high
    assert rows["sweep-1"]["gate_passed"] is True
    assert rows["sweep-2"]["status"] == "failed"
    assert any("max_depth" in line for line in rows["sweep-2"]["log_tail"])
    assert "| **sweep-1** 🏆 | 20 | 4 |" in markdown
    assert "| sweep-2 | 20 | 0 |" in markdown and "⚠️ failed" in markdown
    assert "paired bootstrap over the same 114 test rows, 200 resamples" in markdown

    # The same sweep again: the earlier experiments are replaced, the table is the same.
    _, markdown_again, table_again = sweep_and_tabulate(project)

    assert (markdown_again, table_again) == (markdown, table)

    promoted = run("make", "promote", "EXP=sweep-1", "VENV=", cwd=project).stdout
    assert "not pushing the experiment: no DVC remote is configured" in promoted
    hyperparameters = yaml.safe_load((project / "params.yaml").read_text())["train"]
    assert hyperparameters["hyperparameters"]["n_estimators"] == 20
    assert (
        run(
            "git", "status", "--porcelain", "--", "params.yaml", "dvc.lock", "results", cwd=project
        ).stdout
        == ""
    )

    run("make", "report", "BASE=main", "VENV=", cwd=project)
    report = json.loads((project / "report" / "report.json").read_text())
    f1 = next(row for row in report["metrics"] if row["name"] == "f1")
    assert f1["head"] == rows["sweep-1"]["metrics"]["f1"]["value"]
    assert report["verdict"]["passed"] is True
