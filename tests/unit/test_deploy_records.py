"""Deployment state files written by several processes at once, as two commands would."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from pr2prod.deploy.history import History
from pr2prod.deploy.records import FileRecord

WRITER = """
import sys
from pathlib import Path
from pr2prod.deploy.records import FileRecord
record, letter = FileRecord(Path(sys.argv[1])), sys.argv[2]
for _ in range(int(sys.argv[3])):
    record.write(letter * 200_000)
"""

APPENDER = """
import sys
from pathlib import Path
from pr2prod.deploy.history import Decision, History
history = History(Path(sys.argv[1]))
for number in range(int(sys.argv[3])):
    history.append(Decision(f"{sys.argv[2]}-{number}", "promoted", "passed", None))
"""


def start(script: str, path: Path, name: str, times: int) -> subprocess.Popen[str]:
    command = [sys.executable, "-c", script, str(path), name, str(times)]
    return subprocess.Popen(command, stderr=subprocess.PIPE, text=True)


def test_two_writers_at_once_never_leave_a_partial_file(tmp_path: Path) -> None:
    path = tmp_path / "rollout.json"
    writers = [start(WRITER, path, letter, 150) for letter in "ab"]
    seen = set()
    while any(writer.poll() is None for writer in writers):
        text = FileRecord(path).read()
        if text is not None:  # whole, and one writer's: never a mix or a cut
            assert len(text) == 200_000 and len(set(text)) == 1, (len(text), set(text))
            seen.add(text[0])
    for writer in writers:
        assert writer.wait() == 0, writer.stderr.read() if writer.stderr else ""
    assert FileRecord(path).read() in ("a" * 200_000, "b" * 200_000)
    assert [child.name for child in tmp_path.iterdir()] == ["rollout.json"], "no temporary left"


def test_two_commands_appending_at_once_lose_no_decision(tmp_path: Path) -> None:
    path = tmp_path / "history.jsonl"
    appenders = [start(APPENDER, path, name, 40) for name in ("up", "deploy")]
    for appender in appenders:
        assert appender.wait() == 0, appender.stderr.read() if appender.stderr else ""

    releases = [decision.release for decision in History(path).decisions()]
    assert sorted(releases) == sorted(f"{n}-{i}" for n in ("up", "deploy") for i in range(40))
    for name in ("up", "deploy"):  # each command's decisions in the order it made them
        assert [r for r in releases if r.startswith(name)] == [f"{name}-{i}" for i in range(40)]
