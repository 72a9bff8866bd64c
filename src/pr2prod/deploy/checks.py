"""Checks a ready version must pass before it gets any traffic: its golden rows, a warm-up.

(Waiting until it is ready: pr2prod.readiness.)
"""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx

from pr2prod.serving.bundle import served_answers_match
from pr2prod.serving.policy import ServingPolicy


def golden_rows_answered(url: str) -> tuple[bool, str]:
    """Send the version its own golden rows (from GET /model) over HTTP and compare.

    Readiness proves the model reproduces them in-process; this proves the whole request
    path (validation, batching, serialisation) does too.
    """
    with httpx.Client(base_url=url, timeout=10) as client:
        metadata = client.get("/model").json()
        golden, classes = metadata["golden"], metadata["classes"]
        response = client.post("/predict", json={"records": golden["records"]})
    if response.status_code != 200:
        return False, f"golden rows: /predict answered {response.status_code}"
    policy = ServingPolicy(**metadata["policy"])
    matches, gap = served_answers_match(golden, response.json(), classes, policy)
    if not matches:
        return False, f"golden rows: answers differ from the evaluation by {gap:.3g}"
    failures = warm_up(url, golden["records"])
    if failures:
        failed = sum(failures.values())
        kinds = ", ".join(f"{kind}: {count}" for kind, count in sorted(failures.items()))
        sent = 2 * WARM_UP_ROUNDS * len(golden["records"])
        return False, f"warm-up: {failed} of {sent} single-record requests failed ({kinds})"
    return True, f"golden rows: {len(golden['records'])} answered as evaluated; warm-up answered"


WARM_UP_ROUNDS = 3
WARM_UP_CONCURRENCY = 8


def warm_up(url: str, records: list[dict]) -> dict[str, int]:
    """Send each record alone a few times before real traffic; count what failed, by kind.

    A fresh process answers its first requests slowly (imports, caches, first batches);
    judged on them, an identical model would look slower than stable. Half the rounds go
    one at a time, half concurrently, so the adaptive batcher has also batched before real
    traffic comes. And a version that fails even these requests must not get a client's.
    """
    rounds = [record for _ in range(WARM_UP_ROUNDS) for record in records]
    kinds = asyncio.run(_send_each(url, rounds, concurrency=1))
    kinds += asyncio.run(_send_each(url, rounds, concurrency=WARM_UP_CONCURRENCY))
    return dict(Counter(filter(None, kinds)))


async def _send_each(url: str, records: list[dict], concurrency: int) -> list[str]:
    """POST each record alone; per request '' for a 200, else '4xx', '5xx' or the error."""
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=10) as client:

        async def one(record: dict) -> str:
            async with gate:
                try:
                    response = await client.post("/predict", json={"records": [record]})
                except httpx.TransportError as error:
                    return type(error).__name__
            return "" if response.status_code == 200 else f"{response.status_code // 100}xx"

        return list(await asyncio.gather(*(one(record) for record in records)))
