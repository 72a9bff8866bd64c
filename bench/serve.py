"""`python -m bench.serve` (`make bench-serve`): what the HTTP service costs against the model.

Requests/s and p50/p99 latency at concurrency 1 and 16, for single-record and 32-record
requests, through a real `bentoml serve` process on 127.0.0.1; then the same requests as
in-process model calls (the ceiling), and the ratio served/in-process. Not a test: it
prints a table, writes JSON and says whether the serving goal was met.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bentoml
import httpx
import psutil
from prometheus_client.parser import text_string_to_metric_families
from tabulate import tabulate

from bench.command import exit_status
from pr2prod import paths
from pr2prod.data.records import split_records
from pr2prod.errors import Pr2prodError
from pr2prod.ports import free_port
from pr2prod.processes import stop_process
from pr2prod.readiness import Watched, wait_until_ready
from pr2prod.release.bento import built_bento_tag
from pr2prod.schema import load_schema
from pr2prod.serving.bundle import ModelBundle

DEFAULT_OUT = Path("build") / "bench-serve.json"
CONCURRENCIES = (1, 16)
RECORDS_PER_REQUEST = (1, 32)
WARMUP_S = 1.5  # not counted: new connections, and the batcher learning its cost model
READY_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 30.0  # the service's own traffic timeout
ERROR_BACKOFF_S = 0.01  # keeps a dead server from turning the client into a busy loop
SERVED, IN_PROCESS = "served", "in-process"
DURATION_S = 8.0  # of each measured run
BATCH_SIZE = "bentoml_service_adaptive_batch_size"  # the adaptive batcher's histogram


@dataclass(frozen=True)
class ServingGoal:
    """Batched single records at concurrency 16 near the model's speed, with a bounded p99."""

    records: int = 1
    concurrency: int = 16
    min_ratio: float = 0.6
    max_p99_ms: float = 100.0


GOAL = ServingGoal()


@dataclass(frozen=True)
class Measurement:
    latencies_s: list[float]  # successful requests only
    errors: dict[str, int]  # by HTTP status or exception name
    elapsed_s: float
    client_cpu_s: float = 0.0  # this process: the load generator, or the model in process
    server_cpu_s: float = 0.0  # bentoml serve and its workers
    model_calls: float = 0.0  # the server's adaptive batcher: calls of predict ...
    batched_requests: float = 0.0  # ... and the requests they answered


@dataclass(frozen=True)
class Row:
    mode: str
    records: int  # per request
    concurrency: int
    requests: int  # successful
    errors: dict[str, int]
    requests_per_s: float
    records_per_s: float
    p50_ms: float
    p99_ms: float
    client_cores: float  # CPU used per second of wall time, by the client ...
    server_cores: float  # ... and by the server (2 = both cores of a 2-core machine)
    cpu_ms_per_request: float  # client and server: unlike req/s, blind to other load
    requests_per_model_call: float | None  # what adaptive batching achieved (served only)
    ratio: float | None = None  # served requests/s over in-process requests/s


# --- pure arithmetic -------------------------------------------------------------------


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linearly interpolated as numpy's default; nan if empty."""
    if not values:
        return math.nan
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def summarise(mode: str, records: int, concurrency: int, measurement: Measurement) -> Row:
    done = len(measurement.latencies_s)
    elapsed = measurement.elapsed_s
    per_s = done / elapsed if elapsed > 0 else 0.0
    calls = measurement.model_calls
    cpu_s = measurement.client_cpu_s + measurement.server_cpu_s
    return Row(
        mode=mode,
        records=records,
        concurrency=concurrency,
        requests=done,
        errors=dict(measurement.errors),
        requests_per_s=per_s,
        records_per_s=per_s * records,
        p50_ms=percentile(measurement.latencies_s, 50) * 1000,
        p99_ms=percentile(measurement.latencies_s, 99) * 1000,
        client_cores=measurement.client_cpu_s / elapsed if elapsed > 0 else 0.0,
        server_cores=measurement.server_cpu_s / elapsed if elapsed > 0 else 0.0,
        cpu_ms_per_request=cpu_s / done * 1000 if done else math.nan,
        requests_per_model_call=measurement.batched_requests / calls if calls else None,
    )


def with_ratios(rows: list[Row]) -> list[Row]:
    """Each served row's requests/s over the in-process requests/s for the same request size.

    In process, one call runs at a time (as in one served worker), so its concurrency-1
    figure is the ceiling for every served concurrency.
    """
    ceiling = {
        row.records: row.requests_per_s
        for row in rows
        if row.mode == IN_PROCESS and row.concurrency == 1
    }
    return [
        dataclasses.replace(row, ratio=row.requests_per_s / ceiling[row.records])
        if row.mode == SERVED and ceiling.get(row.records)
        else row
        for row in rows
    ]


def verdict(rows: list[Row], goal: ServingGoal = GOAL) -> dict[str, Any]:
    """Whether the goal's row meets the goal, and if not, why not."""
    row = next(
        (
            r
            for r in rows
            if (r.mode, r.records, r.concurrency) == (SERVED, goal.records, goal.concurrency)
        ),
        None,
    )
    if row is None:
        return {"met": False, "misses": ["the goal's row was not measured"]}
    errors = sum(row.errors.values())
    misses = []
    if row.ratio is None or row.ratio < goal.min_ratio:
        misses.append(f"ratio {row.ratio or 0:.2f} < {goal.min_ratio}")
    if not row.p99_ms < goal.max_p99_ms:  # `not <` so that nan misses too
        misses.append(f"p99 {row.p99_ms:.1f} ms >= {goal.max_p99_ms:g} ms")
    if errors:
        misses.append(f"{errors} errors {row.errors}")
    return {
        "goal": dataclasses.asdict(goal),
        "ratio": row.ratio,
        "p99_ms": row.p99_ms,
        "errors": errors,
        "met": not misses,
        "misses": misses,
    }


def request_batches(rows: list[dict], size: int) -> list[list[dict]]:
    """len(rows) requests of `size` records each, walking the rows cyclically."""
    count = len(rows)
    return [[rows[(start * size + k) % count] for k in range(size)] for start in range(count)]


def table(rows: list[Row]) -> str:
    headers = ["mode", "records/req", "concurrency", "requests", "errors", "req/s", "records/s"]
    headers += ["p50 ms", "p99 ms", "served/in-process", "req/model call", "CPU cores c+s"]
    headers += ["CPU ms/req"]
    body = [
        [
            row.mode,
            row.records,
            row.concurrency,
            row.requests,
            sum(row.errors.values()),
            f"{row.requests_per_s:.0f}",
            f"{row.records_per_s:.0f}",
            f"{row.p50_ms:.1f}",
            f"{row.p99_ms:.1f}",
            "" if row.ratio is None else f"{row.ratio:.2f}x",
            "" if row.requests_per_model_call is None else f"{row.requests_per_model_call:.1f}",
            f"{row.client_cores:.2f}+{row.server_cores:.2f}",
            f"{row.cpu_ms_per_request:.1f}",
        ]
        for row in rows
    ]
    return tabulate(body, headers=headers, colalign=("left",) + ("right",) * (len(headers) - 1))


# --- while measuring -------------------------------------------------------------------


@contextmanager
def collector_paused() -> Iterator[None]:
    """No garbage-collector pauses in this process while it measures.

    This process holds pandas, scikit-learn and bentoml: a full collection takes tens of
    milliseconds here, which would be counted as the server's latency (or the model's).
    """
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


# --- in process ------------------------------------------------------------------------


def model_bundle(bento_tag: str) -> ModelBundle:
    """The model bundle the bento serves (its tag is recorded on the bento by `make bento`)."""
    model_tag = bentoml.bentos.get(bento_tag).info.labels["model_tag"]
    return ModelBundle.load(Path(bentoml.models.get(model_tag).path))


def measure_in_process(
    bundle: ModelBundle, batches: list[list[dict]], duration_s: float
) -> Measurement:
    """The model called as service.predict calls it, records in, probabilities out."""
    model = bundle.load_runner()

    def call(batch: list[dict]) -> None:
        model.probabilities(batch)

    for batch in batches[:20]:  # warm-up
        call(batch)
    latencies = []
    with collector_paused():
        cpu_start = time.process_time()
        start = time.perf_counter()
        deadline = start + duration_s
        for batch in itertools.cycle(batches):
            began = time.perf_counter()
            if began >= deadline:
                break
            call(batch)
            latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - start
    return Measurement(latencies, {}, elapsed, client_cpu_s=time.process_time() - cpu_start)


# --- through HTTP ----------------------------------------------------------------------


def bentoml_command() -> str:
    # The bentoml next to this Python, so the server runs the same environment.
    beside = Path(sys.executable).with_name("bentoml")
    return str(beside) if beside.exists() else (shutil.which("bentoml") or "bentoml")


@dataclass(frozen=True)
class Endpoint:
    """Where requests go, and the process whose CPU time (with its children's) they cost."""

    url: str
    pid: int


@contextmanager
def served(bento_tag: str, log: Path) -> Iterator[Endpoint]:
    """`bentoml serve` on a free local port, yielded once /readyz answers 200."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [bentoml_command(), "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)]
    with log.open("w") as handle:
        process = subprocess.Popen(command, stdout=handle, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, READY_TIMEOUT_S, process=Watched.popen(process, log))
        yield Endpoint(url, process.pid)
    finally:
        stop_process(process)


def cpu_seconds(pid: int) -> float:
    """CPU time used so far by a process and all its children (bentoml's workers)."""
    root = psutil.Process(pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def request_bodies(batches: list[list[dict]]) -> list[bytes]:
    # Encoded once, up front: JSON encoding would otherwise be client CPU taken from the
    # server on the same two cores.
    return [json.dumps({"records": batch}).encode() for batch in batches]


async def measure_served(
    endpoint: Endpoint, bodies: list[bytes], concurrency: int, duration_s: float
) -> Measurement:
    """A warm-up, then `concurrency` clients posting back to back for `duration_s`."""
    # One kept-alive connection per client, opened during the warm-up: no client ever waits
    # for a connection, and none is opened while measuring (a new one would be counted as
    # the server's latency). The client's CPU is measured apart from the server's.
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"content-type": "application/json"}
    url = f"{endpoint.url}/predict"
    async with httpx.AsyncClient(
        limits=limits, timeout=REQUEST_TIMEOUT_S, headers=headers
    ) as client:
        await _load(client, url, bodies, concurrency, WARMUP_S)
        before = _usage(endpoint)
        with collector_paused():
            measurement = await _load(client, url, bodies, concurrency, duration_s)
        after = _usage(endpoint)
    client_cpu, server_cpu, calls, requests = (a - b for a, b in zip(after, before, strict=True))
    return dataclasses.replace(
        measurement,
        client_cpu_s=client_cpu,
        server_cpu_s=server_cpu,
        model_calls=calls,
        batched_requests=requests,
    )


def _usage(endpoint: Endpoint) -> tuple[float, float, float, float]:
    # Cumulative counters, read between runs (nothing is in flight then).
    calls, requests = batch_counts(endpoint.url)
    return time.process_time(), cpu_seconds(endpoint.pid), calls, requests


async def _load(
    client: httpx.AsyncClient,
    url: str,
    bodies: list[bytes],
    concurrency: int,
    duration_s: float,
) -> Measurement:
    next_body = itertools.cycle(bodies).__next__
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    start = time.perf_counter()
    deadline = start + duration_s

    async def one_client() -> None:
        while time.perf_counter() < deadline:
            began = time.perf_counter()
            try:
                response = await client.post(url, content=next_body())  # reads the body too
            except httpx.TransportError as error:  # timeouts included
                errors[type(error).__name__] += 1
                await asyncio.sleep(ERROR_BACKOFF_S)
                continue
            if response.status_code == 200:
                latencies.append(time.perf_counter() - began)
            else:
                errors[str(response.status_code)] += 1

    await asyncio.gather(*(one_client() for _ in range(concurrency)))
    return Measurement(latencies, dict(errors), time.perf_counter() - start)


def batch_counts(url: str) -> tuple[float, float]:
    """(model calls, requests they answered) so far, from the adaptive batcher's histogram."""
    response = httpx.get(f"{url}/metrics", timeout=5)
    response.raise_for_status()
    calls = requests = 0.0
    for family in text_string_to_metric_families(response.text):
        # One series per worker; a request count, not a record count, despite the name.
        for sample in family.samples:
            if sample.name == f"{BATCH_SIZE}_count":
                calls += sample.value
            elif sample.name == f"{BATCH_SIZE}_sum":
                requests += sample.value
    return calls, requests


# --- the whole run ---------------------------------------------------------------------


def run_serve_benchmark(
    bento_tag: str, rows: list[dict], out: Path, duration_s: float = DURATION_S
) -> dict[str, Any]:
    """Measure, print the table and write it as JSON to `out`; returns what was written."""
    if not rows:
        raise Pr2prodError("no rows to send", hint="run `make repro` for the test split")
    batches = {size: request_batches(rows, size) for size in RECORDS_PER_REQUEST}
    bundle = model_bundle(bento_tag)
    # Other work on the host slows both sides unevenly; the load average shows how much.
    load_before = os.getloadavg()
    measured: list[Row] = []
    # In process first, with no server running, so that nothing else competes for the CPU.
    for size in RECORDS_PER_REQUEST:
        print(f"bench-serve: in process, {size} records per call ...", flush=True)
        measurement = measure_in_process(bundle, batches[size], duration_s)
        measured.append(summarise(IN_PROCESS, size, 1, measurement))
    log = out.with_suffix(".server.log")
    with served(bento_tag, log) as endpoint:
        for size, concurrency in itertools.product(RECORDS_PER_REQUEST, CONCURRENCIES):
            print(
                f"bench-serve: {endpoint.url}/predict, {size} records per request, "
                f"concurrency {concurrency} ...",
                flush=True,
            )
            bodies = request_bodies(batches[size])
            measurement = asyncio.run(measure_served(endpoint, bodies, concurrency, duration_s))
            measured.append(summarise(SERVED, size, concurrency, measurement))
    rows_out = with_ratios(measured)
    result = {
        "bento_tag": bento_tag,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "duration_s": duration_s,
        "warmup_s": WARMUP_S,
        "policy": dataclasses.asdict(bundle.policy),
        "rows": [dataclasses.asdict(row) for row in rows_out],
        "verdict": verdict(rows_out),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows_out))
    print(describe_verdict(result["verdict"]))
    if load_before[0] > 0.5:
        print(
            f"bench-serve: the load average was {load_before[0]:.1f} before the run on "
            f"{os.cpu_count()} CPUs: other processes took CPU from both sides"
        )
    print(f"bench-serve: wrote {out} (server log: {log})")
    return result


def describe_verdict(result: dict[str, Any], goal: ServingGoal = GOAL) -> str:
    wanted = (
        f"{goal.records}-record requests at concurrency {goal.concurrency}: "
        f">= {goal.min_ratio}x in process, p99 < {goal.max_p99_ms:g} ms, no errors"
    )
    if result["met"]:
        return f"bench-serve: goal met ({wanted})"
    return f"bench-serve: goal missed ({wanted}): " + "; ".join(result["misses"])


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--duration", type=float, default=DURATION_S, help="seconds of each measured run"
    )
    args = parser.parse_args(argv)

    def run() -> None:
        rows = split_records(paths.TEST_SPLIT, load_schema(paths.SCHEMA))
        run_serve_benchmark(built_bento_tag(), rows, args.out, duration_s=args.duration)

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
