"""What the pull-request workflows promise, read from the files: each test names a way
they would fail on GitHub that the linters do not see.

The comment workflow's behaviour is run by act in test_pr_comment_workflow_act.py, and
pr.yml's in test_pr_workflow_act.py; these hold the rest (pins, concurrency, secrets,
triggers) without running anything.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PR = ROOT / ".github" / "workflows" / "pr.yml"
PR_COMMENT = ROOT / ".github" / "workflows" / "pr-comment.yml"
PR_SIDE = (PR, PR_COMMENT)
# download-artifact v7.0.0: the first release on Node 24 (v6 runs on the deprecated Node 20).
DOWNLOAD_ARTIFACT_V7 = "actions/download-artifact@37930b1c2abaa49bbe596cd826c3c89aef350131"
SECRET = re.compile(r"\$\{\{[^}]*\bsecrets\.")


def load(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def steps(path: Path, job: str) -> list[dict[str, Any]]:
    return load(path)["jobs"][job]["steps"]


def step(path: Path, job: str, name: str) -> dict[str, Any]:
    [found] = [s for s in steps(path, job) if s.get("name") == name]
    return found


EVERY_WORKFLOW = sorted((ROOT / ".github" / "workflows").glob("*.yml"))


@pytest.mark.parametrize("path", EVERY_WORKFLOW, ids=lambda path: path.name)
def test_secrets_reach_only_the_steps_that_use_them(path: Path) -> None:
    """A job- or workflow-level `env:` hands a secret to every step, third-party actions too."""
    workflow = load(path)
    assert not SECRET.search(yaml.safe_dump(workflow.get("env", {})))
    for name, job in workflow["jobs"].items():
        assert not SECRET.search(yaml.safe_dump(job.get("env", {}))), f"job {name}"


def test_the_dvc_credentials_go_to_the_steps_that_reach_the_remote() -> None:
    holding = {
        s.get("name")
        for s in steps(PR, "report")
        if SECRET.search(yaml.safe_dump(s.get("env", {})))
    }
    assert holding == {
        "Set up Python, the locked environment and the DVC cache",
        "Materialise the data",
        "Reproduce the pipeline",
    }
    assert not any(SECRET.search(yaml.safe_dump(s)) for s in steps(PR, "checks"))


def test_the_comment_downloads_the_report_with_the_node_24_release() -> None:
    [download] = [
        s for s in steps(PR_COMMENT, "comment") if "download-artifact" in s.get("uses", "")
    ]
    assert download["uses"] == DOWNLOAD_ARTIFACT_V7
    # No report (pr.yml failed early) must not fail the comment run.
    assert download["continue-on-error"] is True


def test_each_workflow_has_a_concurrency_group_of_its_own() -> None:
    """Without the workflow in the name, pr.yml's `pr-<number>` groups could hold (and
    cancel) another workflow's runs that picked the same name."""
    report_group = load(PR)["concurrency"]["group"]
    comment_group = load(PR_COMMENT)["concurrency"]["group"]
    assert report_group.startswith("${{ github.workflow }}-")
    assert "github.event.pull_request.number" in report_group
    # A merge-queue run has no number: its own ref keeps queue entries apart.
    assert "|| github.ref" in report_group
    assert comment_group.startswith("pr-comment-")


def test_the_report_compares_with_the_events_base_commit() -> None:
    """Not origin/<base branch>: on a re-run that branch may have moved since the event."""
    compare = step(PR, "report", "Compare with the base")
    assert compare["env"]["BASE_SHA"] == (
        "${{ github.event.pull_request.base.sha || github.event.merge_group.base_sha }}"
    )
    assert compare["run"] == 'make report BASE="$BASE_SHA"'
    assert "origin/" not in PR.read_text(encoding="utf-8").split("jobs:")[1]


def test_a_merge_queue_runs_the_checks_and_gets_no_comment() -> None:
    triggers = load(PR)[True]
    assert set(triggers) == {"pull_request", "merge_group"}
    record = step(PR, "report", "Record the pull request number for the comment workflow")
    assert "github.event_name == 'pull_request'" in record["if"]
    assert (
        "github.event.workflow_run.event == 'pull_request'"
        in (load(PR_COMMENT)["jobs"]["comment"]["if"])
    )


def test_lint_and_tests_run_in_a_job_beside_the_report() -> None:
    checks = load(PR)["jobs"]["checks"]
    assert "needs" not in checks  # in parallel with the report, not after it
    assert [s["run"] for s in checks["steps"] if "run" in s] == ["make lint", "make test-fast"]


def test_private_repositories_default_to_a_text_only_comment() -> None:
    mode = load(PR_COMMENT)["env"]["IMAGE_MODE"]
    assert mode == (
        "${{ vars.PR2PROD_COMMENT_IMAGES || "
        "(github.event.repository.private && 'none' || 'publish') }}"
    )


def test_cml_runs_only_when_its_checksum_is_pinned() -> None:
    download = step(PR_COMMENT, "comment", "Download CML")
    assert "vars.PR2PROD_CML_SHA256 != ''" in download["if"]
    assert download["continue-on-error"] is True  # no CML: a text-only comment
    write = step(PR_COMMENT, "comment", "Write the comment")
    assert write["env"]["CML_SHA256"] == "${{ vars.PR2PROD_CML_SHA256 }}"
    assert '--cml-sha256 "$CML_SHA256"' in write["run"]
    # The comment goes through `pr2prod comment` (all pages, the bot's own comment only).
    assert "cml comment" not in PR_COMMENT.read_text(encoding="utf-8")
    post = step(PR_COMMENT, "comment", "Post or update the report comment")
    assert "pr2prod comment --body-file" in post["run"]


SWEEP = ROOT / ".github" / "workflows" / "sweep.yml"


def test_the_sweep_checks_out_the_whole_history_read_only() -> None:
    """`dvc exp run` cannot queue experiments in a shallow clone."""
    workflow = load(SWEEP)
    [checkout] = [s for s in steps(SWEEP, "sweep") if "checkout" in s.get("uses", "")]
    assert checkout["with"]["fetch-depth"] == 0
    assert checkout["with"]["persist-credentials"] is False
    assert workflow["permissions"] == {"contents": "read"}
    assert workflow["jobs"]["sweep"]["permissions"] == {
        "contents": "read",
        "pull-requests": "read",
    }


def test_a_manual_sweep_never_gets_the_remotes_credentials() -> None:
    """A manual run checks out a pull request's code, maybe a fork's: secrets only reach
    steps of pull_request events, which GitHub already keeps from forks."""
    for found in steps(SWEEP, "sweep"):
        for name, value in found.get("env", {}).items():
            if SECRET.search(str(value)):
                assert str(value).startswith("${{ github.event_name == 'pull_request' && "), name


def test_a_manual_sweeps_title_names_its_pull_request_as_the_comment_reads_it() -> None:
    from pr2prod.github.comment import dispatched_pr_number

    run_name = load(SWEEP)["run-name"]
    template = run_name.split("format('")[1].split("'")[0]

    assert dispatched_pr_number(template.replace("{0}", "12")) == 12
    assert load(SWEEP)[True]["workflow_dispatch"]["inputs"]["pr"]["required"] is True
