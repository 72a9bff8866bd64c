"""Steady request load from test rows: synthetic canary traffic, rehearsals and benchmarks.

Open loop, like real clients: a request leaves every 1/rate seconds whether or not the
earlier ones have been answered (up to `max_in_flight` at once), so a slow version gets
the same offered load as a fast one. Runs an event loop in a background thread and
counts what clients would see.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx

from pr2prod.deploy.target import BACKEND_HEADER

TIMEOUT_SECONDS = 10.0


@dataclass
class LoadCounts:
    sent: int = 0
    failed: int = 0  # anything but 200, or no answer at all
    statuses: dict[str, int] = field(default_factory=dict)
    late: int = 0  # sends that waited because max_in_flight requests were unanswered
    # Failed answers by who gave them, as the local router names it (x-pr2prod-backend:
    # stable or canary); "none" when no answer came or nothing named a version.
    failed_by: dict[str, int] = field(default_factory=dict)

    @property
    def failure_rate(self) -> float:
        return self.failed / self.sent if self.sent else 0.0

    def __add__(self, other: LoadCounts) -> LoadCounts:
        return LoadCounts(
            self.sent + other.sent,
            self.failed + other.failed,
            _summed(self.statuses, other.statuses),
            self.late + other.late,
            _summed(self.failed_by, other.failed_by),
        )


def shuffled_cycles(records: list[dict[str, Any]], seed: int = 0) -> Iterator[dict[str, Any]]:
    """Every record once per pass, in a new (seeded) order each pass.

    Not the same order every pass: the router gives the canary exactly its share of
    requests, evenly spread, so a fixed cycle of 44 rows at 25 % would send the canary the
    same 11 rows forever and stable the other 33, and the two would differ by which rows
    they saw rather than by their models (the canary analysis expects each version to see
    the traffic's inputs at random, as real clients send them).
    """
    rng = random.Random(seed)
    order = list(range(len(records)))
    while True:
        rng.shuffle(order)
        yield from (records[index] for index in order)


def _summed(first: dict[str, int], second: dict[str, int]) -> dict[str, int]:
    total = dict(first)
    for key, count in second.items():
        total[key] = total.get(key, 0) + count
    return total


class SteadyLoad:
    """POST one record at a time to `url`/predict at `rate` requests per second."""

    def __init__(
        self, url: str, records: list[dict[str, Any]], rate: float, max_in_flight: int = 64
    ) -> None:
        if rate <= 0 or not records:
            raise ValueError("a steady load needs a positive rate and at least one record")
        self.url = url
        self.records = records
        self.rate = rate
        self.max_in_flight = max_in_flight
        self.counts = LoadCounts()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="steady-load", daemon=True)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=TIMEOUT_SECONDS + 20)

    def _run(self) -> None:
        asyncio.run(self._send_until_stopped())

    async def _send_until_stopped(self) -> None:
        interval = 1.0 / self.rate
        slots = asyncio.Semaphore(self.max_in_flight)
        # Idle connections are closed before servers close them (uvicorn: after 5 s), so a
        # request never goes out on a connection the server is closing.
        limits = httpx.Limits(max_connections=self.max_in_flight, keepalive_expiry=2.0)
        pending: set[asyncio.Task] = set()
        async with httpx.AsyncClient(
            base_url=self.url, timeout=TIMEOUT_SECONDS, limits=limits
        ) as client:
            next_send = time.monotonic()
            for record in shuffled_cycles(self.records):
                if self._stop.is_set():
                    break
                if slots.locked():
                    self.counts.late += 1
                await slots.acquire()
                task = asyncio.create_task(self._send(client, record, slots))
                pending.add(task)
                task.add_done_callback(pending.discard)
                next_send += interval
                pause = next_send - time.monotonic()
                if pause > 0:
                    await asyncio.sleep(pause)
                else:
                    next_send = time.monotonic()  # behind schedule: don't burst to catch up
            if pending:  # answers to requests already sent still count
                await asyncio.wait(pending)

    async def _send(
        self, client: httpx.AsyncClient, record: dict[str, Any], slots: asyncio.Semaphore
    ) -> None:
        backend = "none"
        try:
            response = await client.post("/predict", json={"records": [record]})
            status = str(response.status_code)
            backend = response.headers.get(BACKEND_HEADER, backend)
        except httpx.HTTPError as error:
            status = type(error).__name__
        finally:
            slots.release()
        self.counts.sent += 1
        self.counts.statuses[status] = self.counts.statuses.get(status, 0) + 1
        if status != "200":
            self.counts.failed += 1
            self.counts.failed_by[backend] = self.counts.failed_by.get(backend, 0) + 1
