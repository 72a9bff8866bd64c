"""The deployment history file: typed records in, the documented JSON lines out, and back."""

from __future__ import annotations

from pathlib import Path

import pytest

from pr2prod.deploy.analysis import Analysis
from pr2prod.deploy.history import Decision, History, WindowRecord, windows_table

# A line as the history was written before its records were typed (dicts in, asdict out),
# by a version that did not yet measure the model's own time: no *_model_p50_ms figures.
EARLIER_LINE = (
    '{"decision": "promoted", "git_sha": "0389599aa1", "model_version": "6f43397354688f9a", '
    '"previous": "pr2prod:aaaa", "reason": "every step passed its analysis", '
    '"release": "pr2prod:bbbb", "target": "local", "time": 1717171717.5, "windows": '
    '[{"figures": {"canary_error_rate": 0.0, "canary_p99_ms": 41.2, "canary_requests": 52.0, '
    '"class_divergence": 0.004, "probability_divergence": null, "stable_error_rate": 0.0, '
    '"stable_p99_ms": 38.0, "stable_requests": 148.0}, "outcome": "pass", "reasons": ["ok"], '
    '"step": 1, "weight": 25}]}\n'
)


def test_an_earlier_line_reads_into_records_and_is_written_back_unchanged(tmp_path: Path) -> None:
    earlier = tmp_path / "earlier.jsonl"
    earlier.write_text(EARLIER_LINE)

    [decision] = History(earlier).decisions()
    History(tmp_path / "again.jsonl").append(decision)

    assert decision.successful and decision.previous == "pr2prod:aaaa"
    [window] = decision.windows
    assert (window.step, window.weight, window.outcome, window.reasons) == (1, 25, "pass", ("ok",))
    assert window.figures["canary_requests"] == 52.0
    assert "canary_model_p50_ms" not in window.figures
    assert (tmp_path / "again.jsonl").read_text() == EARLIER_LINE


def test_keys_a_later_version_adds_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(
        '{"release": "r1", "decision": "first-deploy", "reason": "first", "previous": null, '
        '"time": 1.0, "approved_by": "someone", "windows": []}\n'
    )

    assert History(path).decisions() == [Decision("r1", "first-deploy", "first", None, time=1.0)]


def decision_line(release: str, when: float) -> str:
    return History.line(Decision(release, "promoted", "passed", None, time=when))


def test_a_torn_tail_and_a_bad_line_are_skipped_and_named(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.jsonl"
    torn = decision_line("r4", 4.0)[:40]  # a write cut short: no line end
    path.write_text(decision_line("r1", 1.0) + "garbage\n" + decision_line("r3", 3.0) + torn)

    decisions = History(path).decisions()

    assert [d.release for d in decisions] == ["r1", "r3"], "every good line is kept"
    messages = [record.getMessage() for record in caplog.records]
    assert any(f"{path}:2: not a decision" in message for message in messages), messages
    assert any(f"{path}:4: a torn last line" in message for message in messages), messages


def test_an_append_after_a_torn_tail_is_a_line_of_its_own(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    path.write_text(decision_line("r1", 1.0) + decision_line("r2", 2.0)[:30])

    History(path).append(Decision("r3", "promoted", "passed", "r1", time=3.0))

    assert [d.release for d in History(path).decisions()] == ["r1", "r3"]
    assert path.read_text().splitlines()[1] == decision_line("r2", 2.0)[:30], "kept as it was"


def test_good_releases_are_those_that_served_as_stable(tmp_path: Path) -> None:
    history = History(tmp_path / "history.jsonl")
    for release, decision in [
        ("r1", "first-deploy"),
        ("r2", "rolled-back"),
        ("r3", "promoted"),
        ("r1", "manual-rollback"),
    ]:
        history.append(Decision(release, decision, "why", previous=None))

    assert history.good_releases() == ["r1", "r3"]


def test_a_judged_window_keeps_the_analysis_and_the_table_shows_it() -> None:
    figures = {"canary_requests": 52.0, "stable_requests": 148.0, "canary_p99_ms": 41.2}
    window = WindowRecord.judged(2, 50, Analysis("fail", ["too slow"], figures))

    assert window == WindowRecord(2, 50, "fail", ("too slow",), figures)
    assert WindowRecord.from_json(window.to_json()) == window
    row = windows_table([window]).splitlines()[2].split()
    assert row[:5] == ["2", "50%", "fail", "52", "/"] and "41" in row
