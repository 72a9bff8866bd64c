"""The manual rollback (.github/workflows/rollback.yml): what it promises beyond the linters.

It runs by hand only, rolls back a Kubernetes deployment only (a rehearsal leaves nothing
running to roll back), checks the requested version before `make` sees it, and shares the
deploy job's concurrency group, so that it never runs during a rollout.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from test_main_workflow import PRODUCTION_GROUP, load, run_step, step, uses

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
    assert rollback["permissions"] == {"contents": "read", "actions": "read"}
    assert rollback["environment"]["name"] == "production"
    # Never during a rollout of main.yml, nor during its rollback job.
    assert rollback["concurrency"] == {"group": PRODUCTION_GROUP, "cancel-in-progress": False}
    for job in ("deploy", "rollback"):
        assert load()["jobs"][job]["concurrency"]["group"] == PRODUCTION_GROUP


def test_the_rollback_uses_the_history_main_saved_and_saves_it_again() -> None:
    rollback = rollback_workflow()["jobs"]["rollback"]
    fetch = step(rollback, "Fetch the latest deployment state")
    assert fetch["env"]["STATE_ARTIFACT"] == "deploy-state-kubernetes"
    assert fetch["env"]["STATE_REQUIRED"] == "true"
    [upload] = uses(rollback, "actions/upload-artifact")
    assert upload["with"]["name"] == "deploy-state-kubernetes"
    order = [s.get("name") for s in rollback["steps"]]
    assert order.index("Check the requested version") < order.index("Roll back")
    assert order.index("Require a deployment history") < order.index("Roll back")


VALID = [
    "",  # the default: the previous good release
    "ghcr.io/owner/repo/pr2prod@sha256:" + "0" * 64,
    "ghcr.io/owner/repo/pr2prod:0123456789abcdef",
    "registry.example:5000/team/pr2prod:v1.2.3",
]
INVALID = [
    "$(touch pwned)",  # make would run it
    "ghcr.io/x/pr2prod:1 TO=other",
    "a;b",
    "`id`",
    "line\nbreak",
    "-flag",
    "x" * 301,
]


def version_checks() -> list[str]:
    jobs = rollback_workflow()["jobs"]
    return [step(job, "Check the requested version")["run"] for job in jobs.values()]


def test_both_jobs_check_the_version_the_same_way() -> None:
    checks = version_checks()
    assert len(checks) == 2 and len(set(checks)) == 1


@pytest.mark.parametrize("version", VALID, ids=repr)
def test_a_release_reference_is_accepted(tmp_path: Path, version: str) -> None:
    result = run_step(version_checks()[0], tmp_path, {"VERSION": version})
    assert result.returncode == 0, result.output


@pytest.mark.parametrize("version", INVALID, ids=repr)
def test_anything_else_is_refused_before_use(tmp_path: Path, version: str) -> None:
    result = run_step(version_checks()[0], tmp_path, {"VERSION": version})
    assert result.returncode == 1
    assert "is not a release" in result.output
    assert not (tmp_path / "pwned").exists()


# `make` records its arguments, one per line, so the test sees exactly what it got.
MAKE_STUB = 'printf "%s\\n" "$@" > "$HOME/make-args"\n'


@pytest.mark.parametrize(
    ("version", "arguments"),
    [("", ["rollback"]), (VALID[1], ["rollback", f"TO={VALID[1]}"])],
    ids=["previous good", "named"],
)
def test_the_version_becomes_make_rollback_to(
    tmp_path: Path, version: str, arguments: list[str]
) -> None:
    script = step(rollback_workflow()["jobs"]["rollback"], "Roll back")["run"]
    result = run_step(script, tmp_path, {"VERSION": version}, stubs={"make": MAKE_STUB})
    assert result.returncode == 0, result.output
    recorded = tmp_path.parent / f"{tmp_path.name}-github" / "make-args"
    assert recorded.read_text().splitlines() == arguments


def test_from_main_only(tmp_path: Path) -> None:
    script = step(rollback_workflow()["jobs"]["rollback"], "Run from main only")["run"]
    main, branch = tmp_path / "main", tmp_path / "branch"
    main.mkdir()
    branch.mkdir()
    assert run_step(script, main, {"GITHUB_REF": "refs/heads/main"}).returncode == 0
    result = run_step(script, branch, {"GITHUB_REF": "refs/heads/feature"})
    assert result.returncode == 1 and "Roll back from main" in result.output


def test_a_rehearsal_explains_that_nothing_persists(tmp_path: Path) -> None:
    script = step(rollback_workflow()["jobs"]["rehearsal"], "Explain")["run"]
    result = run_step(script, tmp_path, {"DEPLOY_TARGET": "", "VERSION": ""})
    assert result.returncode == 0, result.output
    assert result.summary.startswith("## Nothing to roll back: DEPLOY_TARGET is not set")
    assert "production was never touched" in result.summary
