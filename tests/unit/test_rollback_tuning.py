"""A rolled-back rehearsal names the setting that decided, and never claims it deployed."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from pr2prod.commands import deploy as deploy_command
from pr2prod.deploy import analysis, rehearsal
from pr2prod.deploy.analysis import DivergenceLimits, divergence_failures
from pr2prod.deploy.history import Decision
from pr2prod.deploy.load import LoadCounts
from pr2prod.deploy.observations import Snapshot, Window
from pr2prod.deploy.rehearsal import Rehearsal
from pr2prod.deploy.tuning import deciding_setting, how_to_tune
from pr2prod.release import bento
from pr2prod.report import revisions
from pr2prod.settings import Settings

STABLE = Window(Snapshot(predicted={"a": 100.0, "b": 100.0}))
SKEWED = Window(Snapshot(predicted={"a": 10.0, "b": 190.0}))
CALIBRATED = DivergenceLimits(0.05, 0.05, "the most ... held-out rows before traffic")


@pytest.mark.parametrize(
    ("reason", "setting"),
    [
        (analysis.latency_ratio_failure("p50", 10.0, 30.0, 2.0)[0], "latency_p50_ratio"),
        (analysis.latency_ratio_failure("model p50", 10.0, 40.0, 3.0)[0], "model_time_ratio"),
        (analysis.latency_ratio_failure("p99", 10.0, 40.0, 2.0)[0], "latency_p99_ratio"),
        (
            divergence_failures(STABLE, SKEWED, DivergenceLimits(0.1, 0.1, ""))[0],
            "canary.thresholds.prediction_divergence_max",
        ),
        (divergence_failures(STABLE, SKEWED, CALIBRATED)[0], "canary.window_seconds"),
        (
            "before any traffic, on the same 44 held-out rows: predicted-class divergence "
            "0.433 > 0.1 (Jensen-Shannon)",
            "canary.thresholds.prediction_divergence_max",
        ),
        ("3 inconclusive windows in a row: not enough traffic", "canary.max_inconclusive"),
        ("the canary was not ready within 120 s", "canary.readiness_timeout_seconds"),
        ("no decision within the 600 s deadline", "canary.progress_deadline_seconds"),
    ],
)
def test_each_threshold_names_its_setting(reason: str, setting: str) -> None:
    found = deciding_setting(reason)
    assert found is not None and setting in found, (reason, found)


def test_a_failed_check_is_no_threshold() -> None:
    assert deciding_setting("golden rows: answers differ from the evaluation by 0.2") is None
    assert how_to_tune("warm-up: 3 of 48 single-record requests failed").startswith("no threshold")


def test_the_calibrated_limit_says_what_narrows_it() -> None:
    reason = divergence_failures(STABLE, SKEWED, CALIBRATED)[0]
    assert "simulated from both versions' answers" in how_to_tune(reason)


def test_a_rolled_back_rehearsal_says_what_decided_and_not_that_it_deployed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    reason = divergence_failures(STABLE, SKEWED, DivergenceLimits(0.1, 0.1, ""))[0]
    decision = Decision("pr2prod:canary", "rolled-back", reason, previous="pr2prod:stable")

    def rolled_back(release: str, settings: Settings, **_: object) -> Rehearsal:
        return Rehearsal("pr2prod:stable", decision, LoadCounts(sent=500), 30.0)

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(rehearsal, "rehearse", rolled_back)
    monkeypatch.setattr(bento, "built_bento_tag", lambda: "pr2prod:canary")
    monkeypatch.setattr(bento, "expected_tags", lambda: ("pr2prod-model:abc", "pr2prod:canary"))
    monkeypatch.setattr(revisions, "head_sha", lambda: None)
    monkeypatch.setattr("pr2prod.settings.load_settings", lambda: None)

    status = deploy_command.rehearse(argparse.Namespace(rate=50.0))

    out = capsys.readouterr().out
    assert status == 1
    assert "decided by:      `canary.thresholds.prediction_divergence_max` in params.yaml" in out
    assert "`make up` serves" not in out
    assert "pr2prod:canary was rolled back" in out
