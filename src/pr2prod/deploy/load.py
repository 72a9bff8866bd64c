"""Steady request load from test rows, for synthetic canary traffic and for rehearsals.

Runs in a background thread at a fixed rate, counting what clients would see.
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx


@dataclass
class LoadCounts:
    sent: int = 0
    failed: int = 0  # anything but 200, or no answer at all
    statuses: dict[str, int] = field(default_factory=dict)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.sent if self.sent else 0.0


class SteadyLoad:
    """POST one record at a time to `url`/predict at `rate` requests per second."""

    def __init__(self, url: str, records: list[dict[str, Any]], rate: float) -> None:
        self.url = url
        self.records = records
        self.rate = rate
        self.counts = LoadCounts()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        interval = 1.0 / self.rate
        next_send = time.monotonic()
        with httpx.Client(base_url=self.url, timeout=10) as client:
            for record in itertools.cycle(self.records):
                if self._stop.is_set():
                    return
                self._send(client, record)
                next_send += interval
                pause = next_send - time.monotonic()
                if pause > 0:
                    self._stop.wait(pause)
                else:
                    next_send = time.monotonic()  # behind schedule: don't burst to catch up

    def _send(self, client: httpx.Client, record: dict[str, Any]) -> None:
        try:
            status = str(client.post("/predict", json={"records": [record]}).status_code)
        except httpx.HTTPError as error:
            status = type(error).__name__
        self.counts.sent += 1
        self.counts.statuses[status] = self.counts.statuses.get(status, 0) + 1
        if status != "200":
            self.counts.failed += 1
