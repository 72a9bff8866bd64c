"""The drift monitor (.github/workflows/monitor.yml): what it promises beyond the linters.

Scheduled and by hand, it runs the same `make` targets a laptop does; only the job that
edits the drift issue may write issues; a repository with nothing to watch passes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "monitor.yml"


def load() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def runs(job: dict[str, Any]) -> list[str]:
    return [step["run"] for step in job["steps"] if "run" in step]


def test_runs_on_a_schedule_and_by_hand_without_overlapping() -> None:
    workflow = load()
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    assert set(workflow[True]) == {"schedule", "workflow_dispatch"}
    assert workflow["permissions"] == {}
    assert workflow["concurrency"] == {"group": "monitor", "cancel-in-progress": False}


def test_only_the_issue_job_writes_and_only_issues() -> None:
    jobs = load()["jobs"]
    writes = {
        name: scope
        for name, job in jobs.items()
        for scope, level in job["permissions"].items()
        if level == "write"
    }
    assert writes == {"issue": "issues"}
    assert jobs["issue"]["needs"] == "monitor"


def test_without_prometheus_it_explains_and_monitors_nothing() -> None:
    jobs = load()["jobs"]
    assert jobs["unconfigured"]["if"] == "vars.PROMETHEUS_URL == ''"
    assert jobs["unconfigured"]["permissions"] == {}
    assert jobs["monitor"]["if"] == "vars.PROMETHEUS_URL != ''"
    assert "::notice::" in runs(jobs["unconfigured"])[0]


def test_the_steps_call_make_and_pr2prod_with_the_report_handed_between_jobs() -> None:
    jobs = load()["jobs"]
    assert runs(jobs["monitor"]) == ["make data bento", "make monitor SINCE=6h"]
    assert runs(jobs["issue"]) == [
        'pr2prod drift-issue --report build/monitor --run-url "$RUN_URL"'
    ]
    upload = next(s for s in jobs["monitor"]["steps"] if "upload-artifact" in s.get("uses", ""))
    download = next(s for s in jobs["issue"]["steps"] if "download-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == download["with"]["name"] == "drift-report"
    assert upload["with"]["path"] == download["with"]["path"] == "build/monitor/"
