"""The weekly re-lock (.github/workflows/relock.yml): what it promises beyond the linters.

It replaces Dependabot's pip updater (which never reads requirements.lock): scheduled and
by hand, it runs the same `make` targets a laptop does, holds write scopes in its one job
only, and hands a token to the one step that calls GitHub.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

GITHUB_DIR = Path(__file__).resolve().parents[2] / ".github"
MAKEFILE = GITHUB_DIR.parent / "Makefile"


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def relock_job() -> dict[str, Any]:
    (job,) = load(GITHUB_DIR / "workflows" / "relock.yml")["jobs"].values()
    return job


def test_runs_weekly_and_by_hand_with_write_scopes_in_its_job_only() -> None:
    workflow = load(GITHUB_DIR / "workflows" / "relock.yml")
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}
    assert workflow["permissions"] == {}
    assert relock_job()["permissions"] == {"contents": "write", "pull-requests": "write"}
    assert workflow["concurrency"]["cancel-in-progress"] is False


def test_re_locks_then_proposes_through_make_with_the_token_in_that_step_alone() -> None:
    steps = relock_job()["steps"]
    runs = [step["run"] for step in steps if "run" in step]
    assert runs == ["make lock UPGRADE=1", 'make propose-lock BASE="$BASE_BRANCH"']
    with_secrets = [step["name"] for step in steps if "secrets." in yaml.safe_dump(step)]
    assert with_secrets == ["Open or update the pull request"]
    assert "env" not in relock_job()
    checkout = next(step for step in steps if "actions/checkout" in step.get("uses", ""))
    assert checkout["with"]["persist-credentials"] is False


def test_the_make_targets_it_calls_exist_and_upgrade_only_when_asked() -> None:
    makefile = MAKEFILE.read_text(encoding="utf-8")
    for target in ("lock", "propose-lock"):
        assert re.search(rf"^{target}:", makefile, re.M), target
    assert "LOCK_UPGRADE := --upgrade" in makefile
    assert "$(LOCK_UPGRADE)" in makefile.split("\nlock:")[1].split("\n\n")[0]


def test_dependabot_keeps_the_actions_and_no_longer_claims_the_python_lock() -> None:
    ecosystems = [
        update["package-ecosystem"] for update in load(GITHUB_DIR / "dependabot.yml")["updates"]
    ]
    assert ecosystems == ["github-actions"]
