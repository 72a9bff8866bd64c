"""`make report` / `make gate` on real pull-request branches in a temporary repository."""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from conftest import run, use_fixture_data

pytestmark = pytest.mark.integration


def commit_all(project: Path, message: str) -> None:
    run("git", "add", "--all", cwd=project)
    run("git", "commit", "--quiet", "--allow-empty", "-m", message, cwd=project)


def edit_params(project: Path, change: Callable[[dict], None]) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    change(params)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def open_pull_request(project: Path, change: Callable[[Path], None]) -> None:
    """main holds the reproduced pipeline; branch `pr` makes `change`, reproduces, commits."""
    commit_all(project, "base: reproduced pipeline")
    run("git", "checkout", "--quiet", "-b", "pr", cwd=project)
    change(project)
    run("make", "repro", "VENV=", cwd=project)
    commit_all(project, "the pull request")


def switch_to(project: Path, fixture: str) -> None:
    """Adapt the project to a fixture dataset: data, schema.yaml and params.yaml only."""
    use_fixture_data(project, fixture)
    run("dvc", "add", "data", cwd=project)


def report(project: Path, base: str = "main") -> tuple[str, dict]:
    run("make", "report", f"BASE={base}", "VENV=", cwd=project)
    markdown = (project / "report" / "report.md").read_text()
    return markdown, json.loads((project / "report" / "report.json").read_text())


def test_a_hyperparameter_change_gives_every_section_and_passes(project: Path) -> None:
    def more_trees(project: Path) -> None:
        edit_params(project, lambda p: p["train"]["hyperparameters"].update(n_estimators=300))

    open_pull_request(project, more_trees)
    markdown, body = report(project)

    assert markdown.startswith("<!-- pr2prod-report -->")
    assert "the quality gate passes" in markdown.splitlines()[2]
    for heading in ("Metrics", "Quality gate", "Params", "Data", "Plots", "Reproducibility"):
        assert f"### {heading}" in markdown
    assert "| `train.hyperparameters.n_estimators` | `200` | `300` |" in markdown
    assert "paired bootstrap over the same 114 test rows" in markdown
    accuracy = next(row for row in body["metrics"] if row["name"] == "accuracy")
    assert accuracy["base"] is not None and accuracy["head"] is not None
    assert accuracy["interval"] is not None
    assert "Data unchanged" in markdown
    assert "Stages re-run: train, evaluate" in markdown
    assert "match what was reproduced" in markdown
    for image in ("roc.png", "precision_recall.png", "confusion.png"):
        assert (project / "report" / "plots" / image).stat().st_size > 1000
        assert f"(plots/{image})" in markdown
    main_sha = run("git", "rev-parse", "main", cwd=project).stdout.strip()
    assert f"base `{main_sha[:8]}`" in markdown
    assert run("make", "gate", "VENV=", cwd=project).returncode == 0


def test_a_model_that_breaks_a_gate_rule_fails_the_gate(project: Path) -> None:
    def stump(project: Path) -> None:
        edit_params(
            project,
            lambda p: p["train"]["hyperparameters"].update(n_estimators=1, max_depth=1),
        )

    open_pull_request(project, stump)
    markdown, body = report(project)
    gate = run("make", "gate", "VENV=", cwd=project, check=False)

    assert not body["verdict"]["passed"]
    assert "the quality gate fails" in markdown
    assert "❌" in markdown.split("### Quality gate")[1]
    assert gate.returncode != 0
    assert "FAIL" in gate.stderr


def test_params_changed_without_committing_dvc_lock_fail_the_gate_with_what_to_do(
    project: Path,
) -> None:
    """What CI does on such a pull request: reproduce the commit, report, gate."""
    commit_all(project, "base: reproduced pipeline")
    run("git", "checkout", "--quiet", "-b", "pr", cwd=project)
    edit_params(project, lambda p: p["train"]["hyperparameters"].update(n_estimators=300))
    run(
        "git",
        "commit",
        "--quiet",
        "-m",
        "more trees; dvc.lock forgotten",
        "params.yaml",
        cwd=project,
    )
    run("make", "repro", "VENV=", cwd=project)

    markdown, body = report(project)

    assert not body["verdict"]["passed"]
    instruction = "run `make repro`, then commit dvc.lock and results/"
    assert instruction in body["verdict"]["reason"]
    (rule,) = [rule for rule in body["gate"] if rule["metric"] == "reproduction"]
    assert not rule["passed"]
    assert instruction in markdown.split("### Reproducibility")[1]
    assert "train: outs artifacts/model/model.joblib" in markdown
    gate = run("make", "gate", "VENV=", cwd=project, check=False)
    assert gate.returncode != 0 and instruction in gate.stdout + gate.stderr

    commit_all(project, "the pipeline's own results")  # what the instruction says to do
    _, body = report(project)
    assert body["verdict"]["passed"]


def test_changed_data_shows_rows_labels_and_drift(project: Path) -> None:
    def shift_the_data(project: Path) -> None:
        data = project / "data" / "breast_cancer.csv"
        lines = data.read_text().splitlines(keepends=True)
        header, rows = lines[0], lines[1:]
        columns = header.strip().split(",")
        radius = columns.index("mean_radius")
        shifted = []
        for line in rows[:-40]:  # 40 fewer rows, and every radius 30% larger
            cells = line.rstrip("\n").split(",")
            cells[radius] = f"{float(cells[radius]) * 1.3:.3f}"
            shifted.append(",".join(cells) + "\n")
        data.write_text(header + "".join(shifted))
        run("dvc", "add", "data", cwd=project)

    open_pull_request(project, shift_the_data)
    markdown, body = report(project)

    assert body["data"]["changed"] is True
    assert (body["data"]["base_rows"], body["data"]["head_rows"]) == (569, 529)
    assert "rows 569 -> 529" in markdown
    assert "| malignant |" in markdown.split("### Data")[1]
    drift = {row["feature"]: row for row in body["data"]["drift"]}
    assert drift["mean_radius"]["flagged"] and not drift["mean_texture"]["flagged"]
    assert "unpaired bootstrap" in markdown  # the test rows are not the same any more


def test_a_base_without_metrics_gives_a_clear_report(project: Path) -> None:
    shutil.rmtree(project / "results")
    commit_all(project, "a fork before its first pipeline run")
    run("git", "checkout", "--quiet", "-b", "pr", cwd=project)
    run("make", "repro", "VENV=", cwd=project)
    commit_all(project, "first pipeline run")

    markdown, body = report(project)

    assert "has no metrics" in markdown
    assert all(row["base"] is None for row in body["metrics"])
    assert all("regression" not in rule["check"] for rule in body["gate"])
    assert body["verdict"]["passed"]


def test_failed_validation_still_gives_a_report_that_fails(project: Path) -> None:
    commit_all(project, "base")
    data = project / "data" / "breast_cancer.csv"
    data.write_text(data.read_text().replace(",benign\n", ",unknown\n", 3))
    run("dvc", "add", "data", cwd=project)
    assert run("make", "validate", "VENV=", cwd=project, check=False).returncode != 0

    markdown, body = report(project, base="HEAD")

    assert not body["verdict"]["passed"]
    assert "failed validation" in body["verdict"]["reason"]
    assert "Validation failed" in markdown and "isin" in markdown
    assert "Metrics are not compared" in markdown
    assert run("make", "gate", "VENV=", cwd=project, check=False).returncode != 0


def test_a_schema_change_is_reported(project: Path) -> None:
    def drop_a_feature(project: Path) -> None:
        data = project / "data" / "breast_cancer.csv"
        lines = [line.split(",", 1)[1] for line in data.read_text().splitlines(keepends=True)]
        data.write_text("".join(lines))  # mean_radius is the first column
        schema = yaml.safe_load((project / "schema.yaml").read_text())
        del schema["features"]["mean_radius"]
        (project / "schema.yaml").write_text(yaml.safe_dump(schema, sort_keys=False))
        run("dvc", "add", "data", cwd=project)

    open_pull_request(project, drop_a_feature)
    markdown, _ = report(project)

    assert "The feature schema changed: removed mean_radius." in markdown
    assert "mean_radius" not in markdown.split("### Data")[1].split("### Plots")[0].split("PSI")[-1]


def test_a_pull_request_for_another_target_is_judged_by_absolute_rules_only(
    project: Path,
) -> None:
    """The base predicts a binary diagnosis, the PR three plant species: its log loss is far
    above the base's, which says nothing about the PR, so only the absolute limits decide."""

    open_pull_request(project, lambda project: switch_to(project, "three_class"))
    markdown, body = report(project)

    assert "The task changed (the target changed: diagnosis (classes malignant, benign" in markdown
    assert "species (classes fern, cactus, orchid)" in markdown
    relative = [rule for rule in body["gate"] if rule["check"].startswith("regression vs base")]
    assert relative and all(rule["passed"] is None for rule in relative)
    assert all("not applicable: the target changed" in rule["value"] for rule in relative)
    log_loss = next(row for row in body["metrics"] if row["name"] == "log_loss")
    assert log_loss["base"] is not None and log_loss["delta"] is None
    assert body["verdict"]["passed"], body["verdict"]["reason"]
    assert "not applicable" in body["verdict"]["reason"]
    assert run("make", "gate", "VENV=", cwd=project).returncode == 0


def test_a_switch_to_a_regression_target_gives_a_task_changed_report(project: Path) -> None:
    open_pull_request(project, lambda project: switch_to(project, "regression"))
    markdown, body = report(project)

    assert "The task changed (the target changed: diagnosis (classes malignant" in markdown
    assert "progression (numeric, in disease progression score after one year)" in markdown
    names = {row["name"] for row in body["metrics"]}
    assert {"rmse", "r2", "accuracy"} <= names  # both revisions' figures, side by side
    assert body["verdict"]["passed"], body["verdict"]["reason"]
    assert "(plots/predicted.png)" in markdown and "(plots/residuals.png)" in markdown


def test_a_regression_pull_request_compares_errors_with_intervals_and_gates_them(
    project: Path,
) -> None:
    switch_to(project, "regression")
    run("make", "repro", "VENV=", cwd=project)

    def shallow_trees(project: Path) -> None:
        edit_params(project, lambda p: p["train"]["hyperparameters"].update(max_depth=2))

    open_pull_request(project, shallow_trees)
    markdown, body = report(project)

    assert "paired bootstrap over the same 111 test rows" in markdown
    for name in ("rmse", "mae", "median_absolute_error", "r2", "mape"):
        row = next(row for row in body["metrics"] if row["name"] == name)
        assert row["delta"] is not None and row["interval"] is not None, row
        # The comment's table shows it: base, PR, change and the change's interval.
        assert re.search(
            rf"^\| {name} \|[^|]+\|[^|]+\|[^|]+\| \[[-+]\S+, [-+]\S+\] \|", markdown, re.M
        )
    assert {rule["metric"] for rule in body["gate"]} >= {"rmse", "mae", "r2"}
    gate = markdown.split("### Quality gate")[1].split("###")[0]
    assert all(f"| {metric} | " in gate for metric in ("rmse", "mae", "r2"))
    for image in ("predicted.png", "residuals.png"):
        assert (project / "report" / "plots" / image).stat().st_size > 1000
        assert f"(plots/{image})" in markdown.split("### Plots")[1]

    # A rule the PR's RMSE regression breaks: `make gate` fails, naming it.
    rmse = next(row for row in body["metrics"] if row["name"] == "rmse")
    assert rmse["delta"] > 0  # trees two levels deep underfit
    edit_params(project, lambda p: p["gate"]["rmse"].update(max_regression=rmse["delta"] / 2))
    commit_all(project, "a stricter RMSE rule")
    run("make", "report", "BASE=main", "VENV=", cwd=project)
    gate = run("make", "gate", "VENV=", cwd=project, check=False)
    assert gate.returncode != 0 and "FAILS: 1 of 7" in gate.stderr and "rmse" in gate.stderr
