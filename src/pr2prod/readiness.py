"""Waiting for a server to answer: the one poller behind every "is it ready yet?".

GET a URL path until it answers 200. When the server is a process we started, pass it as
`Watched`: if it exits while we wait, waiting stops at once and the error carries the end
of its log, instead of a timeout that says nothing about why.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx

from pr2prod.errors import Pr2prodError
from pr2prod.processes import log_tail

POLL_SECONDS = 0.25
PROBE_TIMEOUT_S = 2.0  # one GET: a server that takes longer is not ready yet


class NotReady(Pr2prodError):
    """The server did not answer 200 in time, or its process exited first."""


@dataclass(frozen=True)
class Watched:
    """A server process we started: what to call it, whether it still runs, where it logs."""

    name: str
    running: Callable[[], bool]
    log: Path

    @classmethod
    def popen(cls, process: subprocess.Popen, log: Path) -> Watched:
        return cls(f"{process.args[0]} (pid {process.pid})", lambda: process.poll() is None, log)


def wait_until_ready(
    url: str, timeout: float, path: str = "/readyz", process: Watched | None = None
) -> float:
    """Seconds until GET `url``path` answered 200.

    Raises NotReady when `timeout` seconds pass first, or when `process` exits meanwhile.
    """
    started = time.monotonic()
    with httpx.Client(timeout=PROBE_TIMEOUT_S) as client:
        while True:
            if process is not None and not process.running():
                raise NotReady(
                    f"{process.name} exited before {url} was ready; {_end_of_log(process)}",
                    hint=f"read the whole log: {process.log}",
                )
            try:
                if client.get(f"{url}{path}").status_code == 200:
                    return time.monotonic() - started
            except httpx.TransportError:
                pass  # not listening yet, or too busy starting to answer
            if time.monotonic() - started >= timeout:
                break
            time.sleep(POLL_SECONDS)
    late = f"{url}{path} did not answer 200 within {timeout:g} s"
    if process is None:
        raise NotReady(late, hint="check that the server runs at that address")
    raise NotReady(
        f"{late}; {_end_of_log(process)}",
        hint=f"read the whole log: {process.log}; a slow start needs a longer timeout",
    )


def _end_of_log(process: Watched) -> str:
    return f"the end of its log:\n{log_tail(process.log)}"
