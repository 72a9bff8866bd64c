"""monitor.yml, run by act against the GitHub fake, a local service and its Prometheus.

act runs the workflow for a `workflow_dispatch` event on this machine (host mode), remote
actions replaced by the stubs in tests/workflows/stubs/. Its `monitor` job stores the
model (`make data bento`: with the DVC cache restored, as a scheduled run finds it, the
pipeline is checked out rather than run again) and runs `make monitor` against
the Prometheus in the variable PROMETHEUS_URL; its `issue` job downloads that report and
keeps the drift issue on a FakeGitHub served by the test. Two services, each scraped by
its own Prometheus: one gets traffic with a feature shifted (drift: the issue is opened,
then updated by the next run), the other only unshifted traffic (no drift: it is closed).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run
from github_fake import FakeGitHub
from integration.test_monitor import SHIFT, scraping_prometheus, send, served_bento
from test_pr_workflow_act import failed_steps, restored_dvc_cache, run_act

from pr2prod.data.records import split_records
from pr2prod.schema import load_schema

pytestmark = pytest.mark.integration

WORKFLOW = Path(".github/workflows/monitor.yml")


@pytest.fixture()
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


def act_monitor(checkout: Path, work: Path, fake: FakeGitHub, prometheus: str) -> str:
    """One run of the workflow, with act's files (and the uploaded report) in `work`."""
    work.mkdir()
    event = work / "event.json"
    event.write_text(json.dumps({"repository": {"full_name": fake.repository}}))
    act = run_act(
        checkout,
        event,
        work,
        workflow=WORKFLOW,
        event_name="workflow_dispatch",
        job="issue",  # and the `monitor` job it needs
        options=(
            *("--var", f"PROMETHEUS_URL={prometheus}"),
            *("--env", f"GITHUB_API_URL={fake.url}"),
            *("--secret", f"GITHUB_TOKEN={fake.token}"),
            # A scheduled run finds the DVC cache main's pipeline saved.
            *restored_dvc_cache(checkout, work),
        ),
    )
    assert act.returncode == 0, act.output[-6000:]
    assert failed_steps(act.output) == [], act.output[-6000:]
    return act.output


def test_one_drift_issue_is_opened_updated_then_closed_when_drift_clears(
    fake: FakeGitHub, project: Path, bento_tag: str, tmp_path: Path
) -> None:
    # act names the repository after the checkout's origin.
    run("git", "remote", "add", "origin", f"https://github.com/{fake.repository}.git", cwd=project)
    records = split_records(
        project / "artifacts" / "split" / "train.csv", load_schema(project / "schema.yaml")
    )
    folders = {name: tmp_path / name for name in ("shifted", "clean", "p-shifted", "p-clean")}
    for folder in folders.values():
        folder.mkdir()
    with (
        served_bento(bento_tag, folders["shifted"]) as shifted,
        served_bento(bento_tag, folders["clean"]) as clean,
        scraping_prometheus(shifted, folders["p-shifted"]) as watching_shifted,
        scraping_prometheus(clean, folders["p-clean"]) as watching_clean,
    ):
        send(shifted, records, 400, seed=1, shift=SHIFT)
        send(clean, records, 400, seed=2)

        output = act_monitor(project, tmp_path / "run-1", fake, watching_shifted)
        assert "drift-issue: drift: opened #" in output, output[-4000:]
        (issue,) = fake.issues
        assert issue["state"] == "open" and "mean_texture" in issue["body"]

        output = act_monitor(project, tmp_path / "run-2", fake, watching_shifted)
        assert f"drift-issue: drift: updated #{issue['number']}" in output, output[-4000:]
        assert len(fake.issues) == 1

        output = act_monitor(project, tmp_path / "run-3", fake, watching_clean)
        assert f"drift-issue: no drift: closed #{issue['number']}" in output, output[-4000:]
    assert [item["state"] for item in fake.issues] == ["closed"]
    (note,) = fake.posted(issue["number"])
    assert "no drift" in note["body"]
