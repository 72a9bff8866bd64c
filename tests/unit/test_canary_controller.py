"""The controller's step logic with a target and metrics that only exist in memory.

The rollout tests run the real processes; these pin down what a sequence of windows
leads to (a tail breach confirmed or not, a re-run controller remembering it) without
depending on how a busy machine happens to schedule them.
"""

from __future__ import annotations

import math
from dataclasses import replace
from pathlib import Path

import pytest

from pr2prod.deploy import calibration
from pr2prod.deploy import controller as controller_module
from pr2prod.deploy.controller import Controller
from pr2prod.deploy.history import History
from pr2prod.deploy.observations import Snapshot
from pr2prod.deploy.target import Deployed, Role
from pr2prod.deploy.tuning import how_to_tune
from pr2prod.errors import Pr2prodError
from pr2prod.settings import CanarySettings

REQUESTS = 100  # per version and window
FAST = [0.01] * REQUESTS
SLOW_TAIL = [0.01] * 90 + [0.1] * 10  # same median, a p99 ten times stable's


class MemoryTarget:
    """Two roles and a weight, nothing running."""

    name = "memory"

    def __init__(self, stable: str) -> None:
        self.roles: dict[Role, Deployed] = {"stable": Deployed(stable, "http://stable")}
        self.weights: list[int] = []

    def running(self) -> dict[Role, Deployed]:
        return dict(self.roles)

    def start_canary(self, release: str) -> Deployed:
        self.roles["canary"] = Deployed(release, "http://canary")
        return self.roles["canary"]

    def set_canary_weight(self, percent: int, release: str) -> None:
        assert self.roles["canary"].release == release
        self.weights.append(percent)

    def promote(self, release: str) -> None:
        assert self.roles["canary"].release == release
        self.roles["stable"] = self.roles.pop("canary")

    def abort_canary(self, release: str) -> None:
        if "canary" in self.roles:
            assert self.roles["canary"].release == release, "another rollout's canary"
        self.weights.append(0)
        self.roles.pop("canary", None)

    def entry_url(self) -> str:
        return "http://router"


class ScriptedMetrics:
    """Each window, the latencies (seconds) the script gives the canary; stable gets FAST.

    A window's requests arrive while the controller waits the window out: every window
    starts by setting the canary's weight, so after the first wait in it, as many windows
    are over as weights were set. (Counting the controller's looks instead would break on
    a held window, which starts from the looks of the window before.)
    """

    def __init__(self, target: MemoryTarget, canary_windows: list[list[float]]) -> None:
        self.target = target
        self.canary_windows = canary_windows
        self.done = 0

    def wait(self, seconds: float) -> None:
        self.done = len(self.target.weights)

    def __call__(self, role: str, deployed: Deployed) -> Snapshot:
        if role == "stable":
            return cumulative([FAST] * self.done)
        return cumulative(self.canary_windows[: self.done])


def cumulative(windows: list[list[float]]) -> Snapshot:
    latencies = [latency for window in windows for latency in window]
    bounds = (0.005, 0.01, 0.05, 0.1, 0.5, math.inf)
    return Snapshot(
        requests_by_status={"200": float(len(latencies))},
        latency_buckets={bound: float(sum(x <= bound for x in latencies)) for bound in bounds},
        predicted={"a": len(latencies) / 2, "b": len(latencies) / 2},
    )


@pytest.fixture(autouse=True)
def checks_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The pre-traffic checks talk HTTP; here every canary is ready and answers as evaluated."""
    monkeypatch.setattr(controller_module, "wait_until_ready", lambda url, timeout: 0.0)
    monkeypatch.setattr(
        controller_module, "golden_rows_answered", lambda url: (True, "golden rows answered")
    )


SETTINGS = replace(CanarySettings(), steps=(25, 50, 100), window_seconds=0.01)


def make_controller(
    tmp_path: Path, metrics: ScriptedMetrics, monkeypatch: pytest.MonkeyPatch
) -> Controller:
    monkeypatch.setattr(controller_module.time, "sleep", metrics.wait)
    return Controller(
        metrics.target,
        SETTINGS,
        History(tmp_path / "history.jsonl"),
        tmp_path / "rollout.json",
        metrics,
        early_check_seconds=0.005,
        say=lambda line: None,
    )


def outcomes(tmp_path: Path) -> list[str]:
    last = History(tmp_path / "history.jsonl").decisions()[-1]
    return [window.outcome for window in last.windows]


def test_a_single_tail_breach_is_run_again_and_the_clean_rerun_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MemoryTarget("v1")
    metrics = ScriptedMetrics(target, [SLOW_TAIL, FAST, FAST])

    decision = make_controller(tmp_path, metrics, monkeypatch).deploy("v2")

    assert decision.decision == "promoted"
    assert outcomes(tmp_path) == ["suspect", "pass", "pass"]
    assert target.weights == [25, 25, 50, 100]  # the suspect step was held, not advanced


def test_a_tail_breach_in_two_windows_in_a_row_rolls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MemoryTarget("v1")
    metrics = ScriptedMetrics(target, [FAST, SLOW_TAIL, SLOW_TAIL])

    decision = make_controller(tmp_path, metrics, monkeypatch).deploy("v2")

    assert decision.decision == "rolled-back"
    assert decision.reason.endswith("(second window in a row)")
    assert outcomes(tmp_path) == ["pass", "suspect", "fail"]
    assert target.running()["stable"].release == "v1" and "canary" not in target.running()


def test_breaches_apart_are_each_a_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    metrics = ScriptedMetrics(MemoryTarget("v1"), [SLOW_TAIL, FAST, SLOW_TAIL, FAST])

    decision = make_controller(tmp_path, metrics, monkeypatch).deploy("v2")

    assert decision.decision == "promoted"
    assert outcomes(tmp_path) == ["suspect", "pass", "suspect", "pass"]


class Killed(Exception):
    """The controller process dying: nothing after it runs."""


class DyingTarget(MemoryTarget):
    """While `dying`, kills the controller when it sets the weight for its second window."""

    dying = True

    def set_canary_weight(self, percent: int, release: str) -> None:
        if self.dying and len(self.weights) == 1:
            raise Killed
        super().set_canary_weight(percent, release)


def test_a_re_run_controller_remembers_the_suspect_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = DyingTarget("v1")
    metrics = ScriptedMetrics(target, [SLOW_TAIL, SLOW_TAIL])
    with pytest.raises(Killed):
        make_controller(tmp_path, metrics, monkeypatch).deploy("v2")
    target.dying = False  # the canary still runs; the next controller lives

    decision = make_controller(tmp_path, metrics, monkeypatch).deploy("v2")

    # The re-run judges its own first window, and knows the one before was suspect.
    assert decision.decision == "rolled-back"
    assert outcomes(tmp_path) == ["suspect", "fail"]


def test_a_held_step_judges_its_windows_together(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    few, more = [0.01] * 20, [0.01] * 40  # min_requests is 50
    target = MemoryTarget("v1")
    metrics = ScriptedMetrics(target, [few, more, FAST])

    decision = make_controller(tmp_path, metrics, monkeypatch).deploy("v2")

    assert decision.decision == "promoted"
    assert [window.outcome for window in decision.windows] == ["inconclusive", "pass", "pass"]
    held, extended, fresh = (window.figures for window in decision.windows)
    assert (held["canary_requests"], held["stable_requests"]) == (20, REQUESTS)
    assert (extended["canary_requests"], extended["stable_requests"]) == (60, 2 * REQUESTS)
    assert (fresh["canary_requests"], fresh["stable_requests"]) == (REQUESTS, REQUESTS)
    assert target.weights == [25, 25, 50, 100]


def test_abort_stops_a_canary_its_saved_rollout_does_not_know(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A rollout of r2 saved, but r3 runs as the canary (the state of another, dead run):
    `make abort` stops r3 all the same and records r2's rollout as rolled back."""
    target = MemoryTarget("r1")
    controller = make_controller(tmp_path, ScriptedMetrics(target, []), monkeypatch)
    controller._save(controller_module.Rollout("r2", "r1", None, None, started=1.0))
    target.start_canary("r3")

    assert controller.abort("aborted: the deploy job failed")

    assert target.running() == {"stable": Deployed("r1", "http://stable")}
    [decision] = History(tmp_path / "history.jsonl").decisions()
    assert (decision.release, decision.decision) == ("r2", "rolled-back")
    assert not (tmp_path / "rollout.json").exists()


def test_a_trial_judges_the_running_canary_and_leaves_both_versions_running(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MemoryTarget("v1")
    target.start_canary("v2")
    # Setting the weight back to 0 counts as a window for the script: an empty one.
    metrics = ScriptedMetrics(target, [FAST, FAST, [], SLOW_TAIL, SLOW_TAIL])
    controller = make_controller(tmp_path, metrics, monkeypatch)

    first, second = controller.trial("v2"), controller.trial("v2")

    assert first.promoted and [w.outcome for w in first.windows] == ["pass", "pass"]
    assert not second.promoted and second.problem.endswith("(second window in a row)")
    # Each trial ends with the canary out of traffic; nothing is recorded or promoted.
    assert target.weights == [25, 50, 0, 25, 25, 0]
    assert {role: d.release for role, d in target.running().items()} == {
        "stable": "v1",
        "canary": "v2",
    }
    assert not (tmp_path / "history.jsonl").exists() and not (tmp_path / "rollout.json").exists()


def test_a_trial_needs_the_release_running_as_the_canary(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = MemoryTarget("v1")
    controller = make_controller(tmp_path, ScriptedMetrics(target, []), monkeypatch)

    with pytest.raises(Pr2prodError, match="v2 is not the canary") as refused:
        controller.trial("v2")
    assert "start it next to stable" in refused.value.hint


def test_a_canary_for_another_task_is_rolled_back_before_any_record_is_sent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A regressor cannot be a canary of a classifier: stable's clients would get answers of
    another shape. The versions' GET /model says so before any held-out row is asked."""
    target = MemoryTarget("v1")
    metadata = {"http://stable": {"classes": ["a", "b"]}, "http://canary": {"classes": []}}
    monkeypatch.setattr(calibration, "_metadata", lambda url, timeout: metadata[url])
    monkeypatch.setattr(calibration, "_answers", lambda *args: pytest.fail("a record was sent"))
    controller = make_controller(tmp_path, ScriptedMetrics(target, [FAST, FAST]), monkeypatch)
    controller.reference_records = [{"x": 1.0}]

    decision = controller.deploy("v2")

    assert decision.decision == "rolled-back" and target.weights == [0]  # no traffic given
    assert decision.reason.startswith(
        "before any traffic: the canary predicts values where stable predicts classes (a, b)"
    )
    assert how_to_tune(decision.reason).startswith("no threshold")
