"""The manual rollback (.github/workflows/rollback.yml): what it promises beyond the linters.

It runs by hand only, rolls back a Kubernetes deployment only (a rehearsal leaves nothing
running to roll back), reads the history from the cluster (no artifact), and hands the
requested version to pr2prod as one argument that no shell or make expands.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_main_workflow import run_step, step, uses

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "rollback.yml"


def rollback_workflow() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def test_runs_by_hand_with_an_optional_version() -> None:
    workflow = rollback_workflow()
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    assert list(workflow[True]) == ["workflow_dispatch"]
    version = workflow[True]["workflow_dispatch"]["inputs"]["version"]
    assert version["required"] is False and version["default"] == ""
    assert version["type"] == "string"


def test_only_kubernetes_reaches_production_and_only_with_read_permissions() -> None:
    workflow = rollback_workflow()
    assert workflow["permissions"] == {}
    rehearsal, rollback = workflow["jobs"]["rehearsal"], workflow["jobs"]["rollback"]
    assert rehearsal["if"] == "vars.DEPLOY_TARGET != 'kubernetes'"
    assert rollback["if"] == "vars.DEPLOY_TARGET == 'kubernetes'"
    # The rehearsal answer records no deployment and holds no token scope.
    assert rehearsal["permissions"] == {} and "environment" not in rehearsal
    assert rollback["permissions"] == {"contents": "read"}
    assert rollback["environment"]["name"] == "production"


def test_the_history_comes_from_the_cluster_not_an_artifact() -> None:
    rollback = rollback_workflow()["jobs"]["rollback"]
    assert not uses(rollback, "actions/download-artifact")
    assert not uses(rollback, "actions/upload-artifact")
    assert "actions" not in rollback["permissions"]


# `pr2prod` records its arguments, one per line, so the test sees exactly what it got.
PR2PROD_STUB = 'printf "%s\\n" "$@" > "$HOME/pr2prod-args"\n'
DIGEST = "ghcr.io/owner/repo/pr2prod@sha256:" + "0" * 64


@pytest.mark.parametrize(
    ("version", "arguments"),
    [
        ("", ["rollback"]),
        (DIGEST, ["rollback", f"--to={DIGEST}"]),
        # Passed on as data, never run: the controller then refuses what the history
        # does not list as a good release.
        ("$(touch pwned)", ["rollback", "--to=$(touch pwned)"]),
        ("-flag", ["rollback", "--to=-flag"]),
        ("a b;c", ["rollback", "--to=a b;c"]),
    ],
    ids=["previous good", "named", "command", "flag", "spaces"],
)
def test_the_version_reaches_pr2prod_as_one_argument(
    tmp_path: Path, version: str, arguments: list[str]
) -> None:
    script = step(rollback_workflow()["jobs"]["rollback"], "Roll back")["run"]
    workspace = tmp_path / "workspace"
    (workspace / ".venv" / "bin").mkdir(parents=True)
    stub = workspace / ".venv" / "bin" / "pr2prod"
    stub.write_text("#!/usr/bin/env bash\n" + PR2PROD_STUB)
    stub.chmod(0o755)
    result = run_step(script, workspace, {"VERSION": version})
    assert result.returncode == 0, result.output
    recorded = tmp_path / "workspace-github" / "pr2prod-args"
    assert recorded.read_text().splitlines() == arguments
    assert not (workspace / "pwned").exists()


def test_from_main_only(tmp_path: Path) -> None:
    guard = step(rollback_workflow()["jobs"]["rollback"], "Run from main only")
    assert guard["if"] == "github.ref != 'refs/heads/main'"
    result = run_step(guard["run"], tmp_path, {"GITHUB_REF": "refs/heads/feature"})
    assert result.returncode == 1 and "Roll back from main" in result.output


def test_a_rehearsal_explains_that_nothing_persists(tmp_path: Path) -> None:
    script = step(rollback_workflow()["jobs"]["rehearsal"], "Explain")["run"]
    result = run_step(script, tmp_path, {})
    assert result.returncode == 0, result.output
    assert result.summary.startswith("## Nothing to roll back: DEPLOY_TARGET is not kubernetes")
    assert "production was never touched" in result.summary
