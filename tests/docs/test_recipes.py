"""The documentation's multi-step recipes, each block run in order as a reader would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from command_coverage import RECIPES
from conftest import (
    QUICK_CANARY,
    assert_rehearsed_and_stopped,
    copy_project,
    run,
    set_canary_profile,
    use_fixture_data,
)
from doc_pages import find_block
from shell import failure_message, run_documented

pytestmark = pytest.mark.integration


def run_recipe(test: str, cwd: Path, replace: dict[str, str] | None = None) -> None:
    for page, first_command in RECIPES[test]:
        for command in find_block(page, first_command).commands:
            result = run_documented(command.text, cwd, replace)
            assert result.returncode == 0, failure_message(command, result)


def test_adapting_to_your_data(project: Path) -> None:
    # Steps 1-3 of the README with the mixed fixture: new data, its schema and params.
    use_fixture_data(project, "mixed")

    run_recipe("test_adapting_to_your_data", project)

    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert metrics["test_rows"] == 100 and set(metrics["per_class"]) == {"no", "yes"}
    assert run("git", "status", "--porcelain", cwd=project).stdout == ""  # all recorded
    assert run("git", "log", "-1", "--format=%s", cwd=project).stdout == "Train on our data\n"


def test_switching_to_the_regression_sample_then_make_run(tmp_path: Path) -> None:
    """docs/regression.md's switch (data, schema.yaml and params.yaml only), then `make run`
    through: the pipeline, a report against the classifier base that says the task changed,
    the bento, and a rehearsed canary (the regressor retrained with the next seed as
    stable) promoted on the predicted values' divergence."""
    project = copy_project(tmp_path / "clone")
    run_recipe("test_switching_to_the_regression_sample_then_make_run", project)
    set_canary_profile(project, QUICK_CANARY)

    result = run("make", "run", "VENV=", cwd=project)

    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert {"rmse", "mae", "r2"} <= set(metrics) and metrics["test_rows"] == 111
    report = (project / "report" / "report.md").read_text()
    assert "The task changed (the target changed: diagnosis" in report
    assert "held-out rows the canary's predictions diverge from stable's by" in result.stdout
    assert "(values)" in result.stdout
    assert_rehearsed_and_stopped(project, result.stdout, divergence="value JS")
    changed = run("git", "status", "--porcelain", "--", "src", "dvc.yaml", cwd=project).stdout
    assert changed == ""  # no code or pipeline change was needed


def test_filling_an_empty_remote(tmp_path: Path) -> None:
    origin, store = copy_project(tmp_path / "origin"), tmp_path / "store"

    run_recipe("test_filling_an_empty_remote", origin, replace={"/srv/dvc-store": str(store)})

    # A clone gets the data from the remote, not from the sample.
    run("git", "clone", "--quiet", str(origin), str(tmp_path / "clone"), cwd=tmp_path)
    pulled = run("pr2prod", "data", cwd=tmp_path / "clone")
    assert "pulled data/ from the DVC remote 'store'" in pulled.stdout


def test_s3_remote_and_local_credentials(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")

    run_recipe("test_s3_remote_and_local_credentials", project)

    shared = (project / ".dvc" / "config").read_text()
    local = (project / ".dvc" / "config.local").read_text()
    assert "url = s3://my-bucket/pr2prod" in shared
    assert "endpointurl = https://minio.example.com" in shared
    assert "access_key_id = <key id>" in local and "secret_access_key = <secret>" in local
    assert "<secret>" not in shared
    # Only the shared configuration is there for git to commit; config.local is ignored.
    assert run("git", "status", "--porcelain", cwd=project).stdout == " M .dvc/config\n"


def test_renaming_everything_at_once(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "project")

    run_recipe("test_renaming_everything_at_once", project)

    assert run("git", "grep", "-i", "pr2prod", cwd=project, check=False).returncode == 1
    run("ruff", "check", ".", cwd=project)
    run("ruff", "format", "--check", ".", cwd=project)
    # The renamed package, from the copy's own sources: its command and its unit tests.
    renamed = {**os.environ, "PYTHONPATH": str(project / "src")}
    command = run_renamed(["-m", "churn", "--help"], project, renamed)
    assert command.stdout.startswith("usage: churn ")
    # dvc.lock still names the old paths until the recipe's next step, `make run`, records
    # the renamed ones (a re-run of the pipeline this copy has no environment for).
    unit = ["-m", "pytest", "tests/unit", "-q", "-p", "no:cacheprovider"]
    run_renamed([*unit, "-k", "not dvc_lock_records"], project, renamed)


def run_renamed(
    arguments: list[str], cwd: Path, env: dict[str, str]
) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *arguments], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, failure_message(" ".join(arguments), result)
    return result


def test_keeping_per_row_files_out_of_git(project: Path) -> None:
    # Half the switch (params.yaml alone) is refused, naming the dvc.yaml line to change.
    params = project / "params.yaml"
    original = params.read_text()
    params.write_text(original.replace("per_row_files: git", "per_row_files: dvc"))
    refused = run("pr2prod", "repro", cwd=project, check=False)
    assert refused.returncode != 0 and "cache: true" in refused.stderr
    params.write_text(original)

    run_recipe("test_keeping_per_row_files_out_of_git", project)

    committed = run("git", "ls-files", cwd=project).stdout.splitlines()
    assert "results/predictions.csv" not in committed and "results/metrics.json" in committed
    assert (project / "results" / "predictions.csv").is_file()  # in the workspace, from DVC
    assert run("git", "status", "--porcelain", cwd=project).stdout == ""
    lock = (project / "dvc.lock").read_text()
    assert "results/predictions.csv" in lock

    # A pull request on top still gets a paired comparison: the base's predictions come
    # from the DVC cache.
    changed = params.read_text().replace("n_estimators: 200", "n_estimators: 120")
    params.write_text(changed)
    run("pr2prod", "repro", cwd=project)
    run("git", "commit", "--quiet", "--all", "-m", "fewer trees", cwd=project)
    run("pr2prod", "report", "--base", "HEAD~1", cwd=project)
    report = json.loads((project / "report" / "report.json").read_text())
    assert "paired bootstrap" in report["interval_note"]
    assert "results/predictions.csv" not in run("git", "ls-files", cwd=project).stdout
