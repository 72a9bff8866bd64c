"""The DVC pipeline as a user drives it: `make run`, then `dvc repro` redoing only what changed."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import (
    QUICK_REHEARSAL,
    REPO_ROOT,
    assert_rehearsed_and_stopped,
    copy_project,
    run,
    set_canary_profile,
    use_fixture_data,
)

pytestmark = pytest.mark.integration

STAGES = ("validate", "prepare", "train", "evaluate")


def stages_run(repro_output: str) -> list[str]:
    return [stage for stage in STAGES if f"Running stage '{stage}'" in repro_output]


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_make_run_on_a_fresh_clone_goes_from_data_to_a_promoted_canary(tmp_path: Path) -> None:
    project = copy_project(tmp_path / "clone")
    shutil.rmtree(project / "results")  # prove that `make run` produces them itself
    set_canary_profile(project, QUICK_REHEARSAL)  # not a stage's parameter: nothing re-runs
    # The suite already runs inside the locked environment: `VENV=` tells make to use it.
    result = run("make", "run", "VENV=", cwd=project)

    assert "wrote the embedded sample" in result.stdout
    assert stages_run(result.stdout) == list(STAGES)
    assert "roc_auc" in result.stdout and "results/metrics.json" in result.stdout
    assert (project / "results" / "metrics.json").is_file()
    assert "report: wrote report/report.md" in result.stdout
    # "already stored" when an earlier test stored the same model in the shared model store.
    assert re.search(r"bento: model pr2prod-model:\w+ (already )?stored; bento", result.stdout)
    assert_rehearsed_and_stopped(project, result.stdout)
    # The held-out rows with their true labels, sent to the deployed version: as evaluated.
    checked = r"monitoring:\s+🟢 no drift \(114 records; drifted: nothing; 114 labelled, live"
    assert re.search(checked, result.stdout), result.stdout
    assert (project / "build" / "monitor" / "run" / "drift.md").is_file()
    again = run("dvc", "repro", cwd=project)
    assert stages_run(again.stdout) == []
    assert "Data and pipelines are up to date" in again.stdout


def test_make_run_on_a_small_three_class_dataset_ends_with_the_canary_promoted(
    tmp_path: Path,
) -> None:
    """A forker's small data (174 rows, three classes, numeric and categorical features with
    missing values), adapted by data, schema.yaml and params.yaml alone: the rehearsal rolls
    the model out next to itself retrained with another seed, and must promote it."""
    project = copy_project(tmp_path / "clone")
    use_fixture_data(project, "three_class")
    run("dvc", "add", "data", cwd=project)
    set_canary_profile(project, QUICK_REHEARSAL)

    result = run("make", "run", "VENV=", cwd=project)

    assert stages_run(result.stdout) == list(STAGES)
    metrics = json.loads((project / "results" / "metrics.json").read_text())
    assert set(metrics["per_class"]) == {"fern", "cactus", "orchid"}
    assert "held-out rows the canary's predictions diverge from stable's" in result.stdout
    assert_rehearsed_and_stopped(project, result.stdout)
    changed = run("git", "status", "--porcelain", "--", "src", "dvc.yaml", cwd=project).stdout
    assert changed == ""  # no code or pipeline change was needed


def test_the_committed_results_are_what_the_pipeline_reproduces(reproduced_project: Path) -> None:
    for name in ("dvc.lock", "results/metrics.json", "results/predictions.csv"):
        assert (reproduced_project / name).read_text() == (REPO_ROOT / name).read_text(), name


def test_a_hyperparameter_change_reruns_only_train_and_evaluate(project: Path) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["hyperparameters"]["n_estimators"] = 50
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    assert stages_run(run("dvc", "repro", cwd=project).stdout) == ["train", "evaluate"]


def test_a_data_change_reruns_everything_from_validate(project: Path) -> None:
    data = project / "data" / "breast_cancer.csv"
    data.write_text("".join(data.read_text().splitlines(keepends=True)[:-5]))

    assert stages_run(run("dvc", "repro", cwd=project).stdout) == list(STAGES)


def test_a_forced_rerun_gives_identical_metrics_and_model(project: Path) -> None:
    outputs = [project / "results" / "metrics.json", project / "artifacts/model/model.joblib"]
    run("dvc", "repro", "--force", cwd=project)
    first = [md5(path) for path in outputs]
    run("dvc", "repro", "--force", cwd=project)

    assert [md5(path) for path in outputs] == first


def test_a_mixed_type_dataset_needs_only_its_schema_and_params(project: Path) -> None:
    use_fixture_data(project, "mixed")

    result = run("dvc", "repro", cwd=project)

    assert stages_run(result.stdout) == list(STAGES)
    metrics = yaml.safe_load((project / "results" / "metrics.json").read_text())
    assert metrics["test_rows"] == 100
    assert set(metrics["per_class"]) == {"no", "yes"}
    changed = run("git", "status", "--porcelain", "--", "src", "dvc.yaml", cwd=project).stdout
    assert changed == ""  # no code or pipeline change was needed


def test_verify_passes_when_the_commit_holds_its_own_results(project: Path) -> None:
    run("git", "add", "--all", cwd=project)
    run("git", "commit", "--quiet", "--allow-empty", "-m", "reproduced", cwd=project)

    result = run("make", "verify", "VENV=", cwd=project)

    assert "exactly the committed ones" in result.stdout


def test_verify_fails_and_names_what_differs_from_the_commit(project: Path) -> None:
    metrics = project / "results" / "metrics.json"
    metrics.write_text(metrics.read_text().replace('"accuracy": 0.', '"accuracy": 0.5', 1))
    run("git", "add", "--all", cwd=project)
    run("git", "commit", "--quiet", "-m", "metrics that the pipeline does not produce", cwd=project)

    result = run("make", "verify", "VENV=", cwd=project, check=False)

    assert result.returncode != 0
    assert "accuracy: committed 0.5" in result.stderr


def test_editing_code_a_stage_imports_reruns_that_stage_and_every_later_one(
    project: Path,
) -> None:
    """A stage depends on the modules it imports, not only on its own file."""
    validation = project / "src" / "pr2prod" / "data" / "validation.py"
    validation.write_text(validation.read_text() + "\n# a change DVC must notice\n")

    assert stages_run(run("dvc", "repro", cwd=project).stdout) == list(STAGES)
