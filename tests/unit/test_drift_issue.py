"""`pr2prod drift-issue` keeps one issue per alert on a local fake of GitHub's API."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from github_fake import FakeGitHub, point_environment_at

from pr2prod.cli import main
from pr2prod.monitor.drift import DRIFT, NO_DRIFT, NOT_ENOUGH_DATA, Finding, VersionDrift
from pr2prod.monitor.performance import PerformanceFinding
from pr2prod.monitor.report import DriftReport, write_report
from pr2prod.settings import MonitorSettings


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        point_environment_at(server, monkeypatch)
        yield server


def report_dir(tmp_path: Path, verdict: str, feature: str = "mean_texture") -> Path:
    """A drift report whose one feature finding has `verdict`."""
    tested = verdict != NOT_ENOUGH_DATA
    finding = Finding(
        name=feature,
        kind="feature",
        rows=500 if tested else 20,
        shifted_share=0.3 if verdict == DRIFT else 0.02,
        test="G-test, 10 bins" if tested else "",
        statistic=80.0 if tested else None,
        p_value=1e-9 if verdict == DRIFT else (0.6 if tested else None),
        adjusted_p_value=1e-9 if verdict == DRIFT else (0.6 if tested else None),
        verdict=verdict,
        reference={"0": 50.0, "1": 50.0},
        live={"0": 400.0, "1": 100.0},
    )
    version = VersionDrift("abc123", finding.rows, 1.0, [finding])
    directory = tmp_path / verdict.replace(" ", "-")
    write_report(DriftReport("a test", MonitorSettings(), [version]), directory)
    return directory


def run_issue(directory: Path) -> int:
    return main(["drift-issue", "--report", str(directory), "--run-url", "https://ci.invalid/1"])


def test_one_issue_is_opened_updated_then_closed_when_drift_clears(
    fake: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_issue(report_dir(tmp_path, DRIFT)) == 0
    (issue,) = fake.issues
    assert issue["state"] == "open" and issue["labels"] == [{"name": "drift"}]
    assert "mean_texture" in issue["title"] and "mean_texture" in issue["body"]

    assert run_issue(report_dir(tmp_path, DRIFT, feature="mean_area")) == 0
    assert len(fake.issues) == 1 and "mean_area" in fake.issues[0]["title"]

    assert run_issue(report_dir(tmp_path, NOT_ENOUGH_DATA)) == 0  # says nothing: unchanged
    assert fake.issues[0]["state"] == "open"

    assert run_issue(report_dir(tmp_path, NO_DRIFT)) == 0
    assert fake.issues[0]["state"] == "closed"
    (note,) = fake.posted(issue["number"])
    assert "no drift" in note["body"] and "https://ci.invalid/1" in note["body"]
    assert (
        capsys.readouterr().out.splitlines()[-1]
        == f"drift-issue: no drift: closed #{issue['number']}"
    )


def test_issues_it_did_not_open_are_left_alone(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.issues.append(
        {
            "number": 7,
            "title": "someone's",
            "body": "",
            "state": "open",
            "labels": [{"name": "drift"}],
        }
    )
    assert run_issue(report_dir(tmp_path, DRIFT)) == 0
    assert [issue["number"] for issue in fake.issues if issue["state"] == "open"] == [
        7,
        fake.issues[1]["number"],
    ]
    assert run_issue(report_dir(tmp_path, NO_DRIFT)) == 0
    assert fake.issues[0]["state"] == "open" and fake.issues[1]["state"] == "closed"


def test_clean_traffic_with_no_issue_changes_nothing(fake: FakeGitHub, tmp_path: Path) -> None:
    assert run_issue(report_dir(tmp_path, NO_DRIFT)) == 0
    assert fake.issues == [] and all(call.method == "GET" for call in fake.calls)


def test_without_a_report_it_says_to_run_the_monitor(tmp_path: Path) -> None:
    assert run_issue(tmp_path) == 2


def test_live_performance_below_the_gate_opens_the_issue_naming_it(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """Concept drift: the inputs look as always, the labelled predictions do not."""
    clean = report_dir(tmp_path, NO_DRIFT)
    below = PerformanceFinding(
        metric="accuracy",
        rule="live - test >= -0.02 and >= 0.9",
        test_value=0.965,
        live_value=0.8,
        live_interval=(0.75, 0.85),
        delta_bound=-0.09,
        labelled=400,
        verdict=DRIFT,
    )
    version = VersionDrift("abc123", 500, 1.0, [], [below])
    write_report(DriftReport("a test", MonitorSettings(), [version]), clean)

    assert run_issue(clean) == 0

    (issue,) = fake.issues
    assert issue["title"] == "Drift in production traffic: live accuracy"
    assert "| 🔴 | accuracy | 0.965 | 0.800 |" in issue["body"]
