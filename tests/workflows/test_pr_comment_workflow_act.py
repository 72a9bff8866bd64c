"""The comment workflow (.github/workflows/pr-comment.yml), run by act against the GitHub fake.

act runs the `comment` job for a `workflow_run` event on this machine (host mode), with the
remote actions replaced by the stubs in tests/workflows/stubs/ (the download stub fails as
the real action does when the report run uploaded nothing). Its `pr2prod` steps post to a
FakeGitHub served by the test, which then reads back the pull request's comments.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import copy_project, run
from github_fake import FakeGitHub
from test_pr_workflow_act import ActRun, failed_steps, run_act

from pr2prod.github.comment import WATERMARK

pytestmark = pytest.mark.integration

WORKFLOW = Path(".github/workflows/pr-comment.yml")
PR = 42
HEAD = "c" * 40
BOT = "github-actions[bot]"
RUN_URL = "https://github.invalid/octo/pr2prod/actions/runs/4242"
REPORT = "<!-- pr2prod-report -->\n## pr2prod report\n\n![ROC curve](plots/roc.png)\n"


def workflow_run_event(
    path: Path, *, private: bool, pull_requests: list[int], name: str = "PR report"
) -> Path:
    """A completed run of workflow `name` for the pull request's head `HEAD` that failed."""
    run_ = {
        "id": 4242,
        "name": name,
        "event": "pull_request",
        "conclusion": "failure",
        "head_sha": HEAD,
        "head_branch": "feature",
        "head_repository": {"full_name": "someone/pr2prod"},
        "html_url": RUN_URL,
        "pull_requests": [{"number": number} for number in pull_requests],
    }
    repository = {"full_name": "octo/pr2prod", "private": private}
    path.write_text(json.dumps({"workflow_run": run_, "repository": repository}))
    return path


def report_artifact(artifacts: Path) -> None:
    """What pr.yml uploads: report.md with a plot, the plot, the pull request's number."""
    report = artifacts / "pr-report"
    (report / "plots").mkdir(parents=True)
    (report / "report.md").write_text(REPORT)
    (report / "plots" / "roc.png").write_bytes(b"\x89PNG not really")
    (report / "pr-number").write_text(f"{PR}\n")


SWEEP = "<!-- pr2prod:sweep -->\n## Sweep: 9 runs, 8 done, 1 failed or missing; best: `sweep-5`\n"


def sweep_artifact(artifacts: Path) -> None:
    """What sweep.yml uploads: the table, the pull request's number and head."""
    sweep = artifacts / "pr-sweep"
    sweep.mkdir(parents=True)
    (sweep / "sweep.md").write_text(SWEEP)
    (sweep / "pr-number").write_text(f"{PR}\n")
    (sweep / "head-sha").write_text(f"{HEAD}\n")


def act_comment(
    tmp_path: Path, fake: FakeGitHub, event: dict[str, Any], *, with_report: bool
) -> ActRun:
    work = tmp_path / "act"
    work.mkdir()
    checkout = copy_project(work / "checkout")
    # act names the repository after the checkout's origin.
    run("git", "remote", "add", "origin", f"https://github.com/{fake.repository}.git", cwd=checkout)
    artifacts = work / "artifacts"
    if with_report:
        report_artifact(artifacts)
    if event.get("name") == "PR sweep":
        sweep_artifact(artifacts)
    return run_act(
        checkout,
        workflow_run_event(work / "event.json", **event),
        work,
        workflow=WORKFLOW,
        event_name="workflow_run",
        job="comment",
        options=(
            *("--env", f"GITHUB_API_URL={fake.url}"),
            *("--secret", f"GITHUB_TOKEN={fake.token}"),
        ),
    )


@pytest.fixture()
def fake() -> Any:
    with FakeGitHub() as server:
        server.add_pull(PR, HEAD)
        yield server


def test_a_run_that_left_no_report_ends_green_and_says_so(fake: FakeGitHub, tmp_path: Path) -> None:
    earlier = fake.add_comment(PR, f"{WATERMARK}\nthe report of an earlier push", author=BOT)

    act = act_comment(tmp_path, fake, {"private": False, "pull_requests": [PR]}, with_report=False)

    assert act.returncode == 0, act.output
    # Only the download failed, and it may: the job goes on without a report.
    failed = failed_steps(act.output)
    assert [line.split("Failure - ")[1].split(" [")[0] for line in failed] == [
        "Main Copy the artifact",  # the download stub's own step, as the real action fails
        "Main Download the report (untrusted data)",
    ], act.output
    assert "Failed but continue next step" in act.output
    [comment] = fake.posted(PR)
    assert comment["id"] == earlier["id"]  # the stale report is replaced, not left standing
    assert "The report could not be produced for `cccccccc`" in comment["body"]
    assert f"[its run]({RUN_URL})" in comment["body"]


def test_a_forks_run_that_left_no_report_posts_nothing(fake: FakeGitHub, tmp_path: Path) -> None:
    act = act_comment(tmp_path, fake, {"private": False, "pull_requests": []}, with_report=False)

    assert act.returncode == 0, act.output
    assert "nothing to post" in act.output
    assert fake.calls == []


@pytest.mark.parametrize(
    ("private", "note"),
    [(True, "PR2PROD_COMMENT_IMAGES=none"), (False, "PR2PROD_CML_SHA256")],
    ids=["private-repository", "public-without-pinned-cml"],
)
def test_the_report_is_posted_text_only_without_running_cml(
    fake: FakeGitHub, tmp_path: Path, private: bool, note: str
) -> None:
    act = act_comment(tmp_path, fake, {"private": private, "pull_requests": []}, with_report=True)

    assert act.returncode == 0, act.output
    assert failed_steps(act.output) == [], act.output
    # Neither mode downloads CML: private repositories publish nothing, and an unpinned
    # binary is never fetched.
    assert (
        "Download CML"
        not in act.output.split("Post or update")[0].replace("Skipping step 'Download CML'", "")
        or "⭐ Run Main Download CML" not in act.output
    )
    [comment] = fake.posted(PR)
    assert comment["user"]["login"] == BOT
    assert comment["body"].startswith(f"{WATERMARK}\n<!-- pr2prod-report -->\n## pr2prod report")
    assert "![" not in comment["body"] and note in comment["body"]


def test_a_sweeps_table_joins_the_report_comment_as_its_own_section(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    earlier = fake.add_comment(PR, f"{WATERMARK}\n<!-- pr2prod-report -->\nthe report", author=BOT)
    event = {"private": True, "pull_requests": [PR], "name": "PR sweep"}

    act = act_comment(tmp_path, fake, event, with_report=False)

    assert act.returncode == 0, act.output
    assert failed_steps(act.output) == [], act.output
    [comment] = fake.posted(PR)
    assert comment["id"] == earlier["id"]
    assert comment["body"] == f"{WATERMARK}\n<!-- pr2prod-report -->\nthe report\n\n{SWEEP}"
