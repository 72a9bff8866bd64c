"""`make run`: the whole lifecycle on one machine, ending with a rehearsed canary rollout."""

from __future__ import annotations

import re
from pathlib import Path

import psutil
import pytest
from conftest import QUICK_CANARY, run, set_canary_profile

pytestmark = pytest.mark.integration


def test_make_run_ends_with_a_promoted_canary_and_stops_everything(project: Path) -> None:
    set_canary_profile(project, QUICK_CANARY)

    result = run("make", "run", "VENV=", cwd=project)

    out = result.stdout
    assert "report: wrote report/report.md" in out
    assert "rehearsal: starting pr2prod:" in out
    assert re.search(r"decision:\s+promoted after \d+ s", out), out
    canary = re.search(r"canary:\s+(pr2prod:\w+) \(model pr2prod-model:\w+\)", out)
    assert canary and re.search(rf"deployed:\s+{canary[1]}", out), out
    clients = re.search(r"client requests: (\d+) sent at 50/s, (\d+) failed", out)
    assert clients and int(clients[1]) > 200 and int(clients[2]) == 0, out
    assert "step" in out and "probability JS" in out  # the windows table
    # Everything the rehearsal started is gone: no state left, no process of ours running.
    rehearsal = project / "build" / "rehearsal"
    assert not (rehearsal / "deploy" / "local" / "state.json").exists()
    assert [process.pid for process in psutil.process_iter(["cmdline"])
            if str(rehearsal) in " ".join(process.info["cmdline"] or [])] == []  # fmt: skip
