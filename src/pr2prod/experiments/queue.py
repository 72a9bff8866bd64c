"""`pr2prod sweep`: queue every run of the sweep as a DVC experiment and run the queue.

DVC does the work (`dvc exp run --queue`, then `dvc exp run --run-all --jobs N`, each run
in a temporary copy of the repository); this module adds what running it unattended
needs: a refusal with a way out where `dvc exp` cannot work (no git commit, a shallow
clone), progress lines while the queue runs, and the end of each failed run's log.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pr2prod.dvc_tools import run_dvc
from pr2prod.errors import Pr2prodError
from pr2prod.experiments.grid import Run, queue_arguments
from pr2prod.report.revisions import git

# How often the queue's state is read while it runs (each read is a `dvc queue status`).
POLL_SECONDS = 5.0
# Lines of a failed run's log printed under its name.
LOG_TAIL_LINES = 12
# What `dvc queue status` calls the end states of a task.
SUCCEEDED, FAILED = "Success", "Failed"


@dataclass(frozen=True)
class Progress:
    """How many of the sweep's runs are in each state."""

    done: int
    running: int
    failed: int
    queued: int

    def line(self) -> str:
        return (
            f"{self.done} done, {self.running} running, {self.failed} failed, {self.queued} waiting"
        )


def default_workers() -> int:
    """One experiment per CPU core this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def check_repository() -> str:
    """The commit the experiments start from; refuses where `dvc exp run` cannot work."""
    if git("rev-parse", "--is-inside-work-tree").returncode != 0:
        raise Pr2prodError(
            "a sweep needs a git repository: each DVC experiment is a commit on top of HEAD",
            hint="run it in a clone of the repository",
        )
    head = git("rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    if head.returncode != 0:
        raise Pr2prodError(
            "the repository has no commit yet: DVC experiments start from HEAD",
            hint="commit the project first (`git add -A && git commit`)",
        )
    if git("rev-parse", "--is-shallow-repository").stdout.strip() == "true":
        raise Pr2prodError(
            "this is a shallow clone, and `dvc exp run` cannot queue experiments in one",
            hint="fetch the whole history (`git fetch --unshallow`); in GitHub Actions, "
            "check out with `fetch-depth: 0`",
        )
    return head.stdout.strip()


def queue_states(status_text: str) -> dict[str, str]:
    """Experiment name -> state, from `dvc queue status`'s table.

    Its rows are `TASK NAME CREATED STATUS`, where CREATED holds spaces (`04:01 AM`);
    the name is the second column and the state the last.
    """
    states: dict[str, str] = {}
    lines = iter(status_text.splitlines())
    for line in lines:
        if line.split()[:2] == ["Task", "Name"]:
            break
    for line in lines:
        columns = line.split()
        if len(columns) < 4:
            break  # the blank line before "Worker status"
        states[columns[1]] = columns[-1]
    return states


def progress(runs: Iterable[Run], states: dict[str, str]) -> Progress:
    counts = {"done": 0, "running": 0, "failed": 0, "queued": 0}
    for run in runs:
        state = states.get(run.name, "Queued")
        key = {SUCCEEDED: "done", FAILED: "failed", "Running": "running"}.get(state, "queued")
        counts[key] += 1
    return Progress(**counts)


def log_tail(log: str, lines: int = LOG_TAIL_LINES) -> list[str]:
    """The last non-blank lines of a run's log, a line repeated at once kept once."""
    kept: list[str] = []
    for line in log.splitlines():
        if line.strip() and (not kept or kept[-1] != line):
            kept.append(line.rstrip())
    return kept[-lines:]


def forget_earlier_runs(runs: list[Run]) -> None:
    """Remove experiments and queue entries an earlier sweep left under the same names.

    A rerun then makes the same experiments again instead of DVC refusing the names.
    """
    names = [run.name for run in runs]
    known = set(queue_states(run_dvc("queue", "status", check=False).stdout))
    listed = run_dvc("exp", "list", "--name-only", check=False).stdout.split()
    # A queue entry (queued, failed or finished) and an experiment ref are removed apart.
    queued = [name for name in names if name in known]
    finished = [name for name in names if name in listed]
    if queued:
        run_dvc("queue", "remove", *queued, check=False)
    if finished:
        run_dvc("exp", "remove", *finished, check=False)


def queue_runs(runs: list[Run], params: dict[str, Any], say: Callable[[str], None]) -> None:
    """Queue the runs as DVC experiments on top of the workspace, all in one `dvc exp run`
    (a DVC process costs seconds to start); `params`: params.yaml."""
    run_dvc("exp", "run", "--queue", *queue_arguments(runs, params))
    for run in runs:
        say(f"queued {run.name}: {run.describe()}")


def run_queue(runs: list[Run], workers: int, log_path: Path, say: Callable[[str], None]) -> int:
    """Run the queued experiments; returns how many of the sweep's runs failed."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    command = [sys.executable, "-m", "dvc", "exp", "run", "--run-all", "--jobs", str(workers)]
    last = ""
    with (
        log_path.open("w") as log,
        subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT) as queue,
    ):
        while True:
            finished = queue.poll() is not None
            states = queue_states(run_dvc("queue", "status", check=False).stdout)
            line = progress(runs, states).line()
            if line != last:
                say(f"[{_elapsed(started)}] {line}")
                last = line
            if finished:
                break
            with contextlib.suppress(subprocess.TimeoutExpired):
                queue.wait(timeout=POLL_SECONDS)  # returns as soon as the queue ends
    counts = progress(runs, states)
    for run in runs:
        if states.get(run.name) == FAILED:
            say(f"{run.name} failed ({run.describe()}); the end of its log:")
            for text in log_tail(run_dvc("queue", "logs", run.name, check=False).stdout):
                say(f"    | {text}")
    unfinished = counts.running + counts.queued
    if unfinished:
        say(
            f"{unfinished} run(s) never finished: the queue stopped (exit {queue.returncode}); "
            f"DVC's own output is in {log_path}"
        )
    say(f"finished in {_elapsed(started)}: {counts.done} done, {counts.failed} failed")
    return counts.failed + unfinished


def _elapsed(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60}m{seconds % 60:02d}s"
