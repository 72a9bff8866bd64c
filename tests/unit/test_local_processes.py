"""How the local target recognises the processes it started, by PID and command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import psutil
import pytest

from pr2prod.deploy.local import RouterRecord, own_process, wait_until_stopped
from pr2prod.processes import stop_process


@pytest.fixture
def child() -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield process
    stop_process(process)


def record_of(pid: int) -> RouterRecord:
    return RouterRecord(pid, 8123, "http://127.0.0.1:8123", "router.log")


def test_a_process_without_our_command_line_is_not_ours(child: subprocess.Popen) -> None:
    assert own_process(record_of(child.pid)) is None  # same PID, another program


def test_our_child_whose_command_line_is_not_readable_yet_is_ours(
    child: subprocess.Popen, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Right after Popen returns, the kernel may still be setting up the exec'd program:
    # its command line reads empty for that instant.
    monkeypatch.setattr(psutil.Process, "cmdline", lambda self: [])

    assert own_process(record_of(child.pid)) is not None
    assert own_process(record_of(os.getppid())) is None  # empty, and not our child


def test_a_finished_child_is_gone(child: subprocess.Popen) -> None:
    child.kill()
    child.wait()

    assert own_process(record_of(child.pid)) is None


# A parent that starts a child, says its PID, and lives on without ever collecting it.
NEGLECTFUL_PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(child.pid, flush=True)
time.sleep(120)
"""


def test_a_stopped_process_its_parent_has_not_collected_is_not_waited_for() -> None:
    # A version started by a process that lives on (a test's canary) is that process's
    # child: once stopped, it is a zombie until collected, and must not hold up a stop.
    parent = subprocess.Popen([sys.executable, "-c", NEGLECTFUL_PARENT], stdout=subprocess.PIPE)
    try:
        grandchild = psutil.Process(int(parent.stdout.readline()))
        assert wait_until_stopped([grandchild], timeout=0) == [grandchild]  # it runs

        grandchild.terminate()
        deadline = time.monotonic() + 60
        while grandchild.status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)

        assert grandchild.status() == psutil.STATUS_ZOMBIE  # exited, not yet collected
        assert wait_until_stopped([grandchild], timeout=0) == []
    finally:
        stop_process(parent)
