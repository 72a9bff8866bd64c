"""`python -m bench.serve` (`make bench-serve`): the service against its model and its framework.

Side by side, on the same machine and the same test rows: the scikit-learn pipeline and
the compiled model called in process; the service running each (two bentos of the same
model, one built with `compile.enabled: false`); and a BentoML service that only echoes
the records back (bench/echo.py), the framework's own ceiling here. Single records at
concurrency 1 and 16, and 32-record requests, through real `bentoml serve` processes on
127.0.0.1. Also what counting inputs for drift monitoring costs a request
(bench.input_counting), against the compiled service's median. Not a test: it prints a
table with requests/s, p50, p99, CPU per request and the model's own time per call, writes
JSON and says which targets the compiled service met.
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
from pr2prod.release.bento import build_bento, built_bento_tag
from pr2prod.schema import load_schema
from pr2prod.serving.bundle import ModelBundle
from pr2prod.serving.inference import PipelineRunner, Runner
from pr2prod.settings import load_settings

DEFAULT_OUT = Path("build") / "bench-serve.json"
CONCURRENCIES = (1, 16)
RECORDS_PER_REQUEST = (1, 32)
WARMUP_S = 1.5  # not counted: new connections, and the batcher learning its cost model
READY_TIMEOUT_S = 90.0
REQUEST_TIMEOUT_S = 30.0  # the service's own traffic timeout
ERROR_BACKOFF_S = 0.01  # keeps a dead server from turning the client into a busy loop
DURATION_S = 8.0  # of each measured run
BATCH_SIZE = "bentoml_service_adaptive_batch_size"  # the adaptive batcher's histogram
MODEL_SECONDS = "pr2prod_model_seconds"  # the service's own time per model call
ECHO_SERVICE = "bench.echo:Echo"

# What is measured: the model in process (one call at a time, as in one served worker) ...
SKLEARN_IN_PROCESS = "scikit-learn, in process"
COMPILED_IN_PROCESS = "compiled, in process"
# ... and over HTTP.
SKLEARN_SERVED = "service, scikit-learn"
COMPILED_SERVED = "service, compiled"
ECHO_SERVED = "echo service"
IN_PROCESS = (SKLEARN_IN_PROCESS, COMPILED_IN_PROCESS)
MODES = (*IN_PROCESS, SKLEARN_SERVED, COMPILED_SERVED, ECHO_SERVED)


@dataclass(frozen=True)
class Targets:
    """What the compiled service must reach for the sample model on two cores."""

    max_model_ms: float = 1.0  # the model's own time per call
    max_p99_ms_alone: float = 10.0  # single records, concurrency 1
    max_p99_ms_busy: float = 100.0  # single records, concurrency 16 ...
    min_requests_per_s_busy: float = 3 * 121  # ... three times the scikit-learn service's
    min_share_of_echo: float = 0.8  # requests/s at concurrency 16 against the echo service's


TARGETS = Targets()


@dataclass(frozen=True)
class Measurement:
    latencies_s: list[float]  # successful requests only
    errors: dict[str, int]  # by HTTP status or exception name
    elapsed_s: float
    client_cpu_s: float = 0.0  # this process: the load generator, or the model in process
    server_cpu_s: float = 0.0  # bentoml serve and its workers
    model_calls: float = 0.0  # the server's adaptive batcher: calls of predict ...
    batched_requests: float = 0.0  # ... and the requests they answered
    model_seconds: float = 0.0  # the server's own model time, over ...
    timed_model_calls: float = 0.0  # ... this many model calls


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
    model_ms_per_call: float | None  # the model's own time per call (the model's services)
    share_of_echo: float | None = None  # requests/s over the echo service's, same load


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
    timed = measurement.timed_model_calls
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
        model_ms_per_call=measurement.model_seconds / timed * 1000 if timed else None,
    )


def with_echo_shares(rows: list[Row]) -> list[Row]:
    """Each model service's requests/s over the echo service's under the same load."""
    echo = {(r.records, r.concurrency): r.requests_per_s for r in rows if r.mode == ECHO_SERVED}
    served = (SKLEARN_SERVED, COMPILED_SERVED)
    return [
        dataclasses.replace(row, share_of_echo=row.requests_per_s / echo[key])
        if row.mode in served and echo.get(key := (row.records, row.concurrency))
        else row
        for row in rows
    ]


def verdict(rows: list[Row], targets: Targets = TARGETS) -> dict[str, Any]:
    """Each target of the compiled service, with the figure measured and whether it was met.

    A target whose row was not measured, or that saw errors, is missed.
    """
    found = {(r.mode, r.records, r.concurrency): r for r in rows}
    alone, busy = found.get((COMPILED_SERVED, 1, 1)), found.get((COMPILED_SERVED, 1, 16))
    checks = [
        ("model time per call (ms)", busy, "model_ms_per_call", "<", targets.max_model_ms),
        ("p99 ms, single records, concurrency 1", alone, "p99_ms", "<", targets.max_p99_ms_alone),
        ("p99 ms, single records, concurrency 16", busy, "p99_ms", "<", targets.max_p99_ms_busy),
        (
            "requests/s, single records, concurrency 16",
            busy,
            "requests_per_s",
            ">=",
            targets.min_requests_per_s_busy,
        ),
        (
            "share of the echo service's requests/s, concurrency 16",
            busy,
            "share_of_echo",
            ">=",
            targets.min_share_of_echo,
        ),
    ]
    results = []
    for name, row, field, comparison, limit in checks:
        value = None if row is None else getattr(row, field)
        errors = None if row is None else sum(row.errors.values())
        met = (
            value is not None
            and not errors
            and (value < limit if comparison == "<" else value >= limit)  # nan misses
        )
        results.append(
            {
                "target": f"{name} {comparison} {limit:g}",
                "value": value,
                "errors": errors,
                "met": met,
            }
        )
    return {"targets": results, "met": all(result["met"] for result in results)}


def request_batches(rows: list[dict], size: int) -> list[list[dict]]:
    """len(rows) requests of `size` records each, walking the rows cyclically."""
    count = len(rows)
    return [[rows[(start * size + k) % count] for k in range(size)] for start in range(count)]


def table(rows: list[Row]) -> str:
    headers = ["mode", "records/req", "concurrency", "requests", "errors", "req/s", "records/s"]
    headers += ["p50 ms", "p99 ms", "CPU ms/req", "model ms/call", "req/model call"]
    headers += ["CPU cores c+s", "vs echo"]
    body = [
        [
            row.mode,
            row.records,
            row.concurrency,
            row.requests,
            sum(row.errors.values()),
            f"{row.requests_per_s:.0f}",
            f"{row.records_per_s:.0f}",
            f"{row.p50_ms:.2f}",
            f"{row.p99_ms:.2f}",
            f"{row.cpu_ms_per_request:.2f}",
            "" if row.model_ms_per_call is None else f"{row.model_ms_per_call:.3f}",
            "" if row.requests_per_model_call is None else f"{row.requests_per_model_call:.1f}",
            f"{row.client_cores:.2f}+{row.server_cores:.2f}",
            "" if row.share_of_echo is None else f"{row.share_of_echo:.2f}x",
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
    runner: Runner, batches: list[list[dict]], duration_s: float, numeric: bool = False
) -> Measurement:
    """The model called as service.predict calls it: records in, probabilities out (values
    out, for a `numeric` target)."""
    predict = runner.values if numeric else runner.probabilities
    for batch in batches[:20]:  # warm-up
        predict(batch)
    latencies = []
    with collector_paused():
        cpu_start = time.process_time()
        start = time.perf_counter()
        deadline = start + duration_s
        for batch in itertools.cycle(batches):
            began = time.perf_counter()
            if began >= deadline:
                break
            predict(batch)
            latencies.append(time.perf_counter() - began)
        elapsed = time.perf_counter() - start
    cpu_s = time.process_time() - cpu_start
    return Measurement(latencies, {}, elapsed, client_cpu_s=cpu_s)


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
    # The version's own address, whose /metrics holds the model's counters: the same as
    # `url` unless requests go through something in front of it (the canary router).
    metrics_url: str | None = None


@contextmanager
def served(target: str, log: Path) -> Iterator[Endpoint]:
    """`bentoml serve` of a bento tag or a service's import path on a free local port,
    yielded once /readyz answers 200."""
    port = free_port()
    log.parent.mkdir(parents=True, exist_ok=True)
    command = [bentoml_command(), "serve", target, "--host", "127.0.0.1", "--port", str(port)]
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
    client_cpu, server_cpu, *counters = (a - b for a, b in zip(after, before, strict=True))
    calls, requests, model_seconds, timed_calls = counters
    return dataclasses.replace(
        measurement,
        client_cpu_s=client_cpu,
        server_cpu_s=server_cpu,
        model_calls=calls,
        batched_requests=requests,
        model_seconds=model_seconds,
        timed_model_calls=timed_calls,
    )


def _usage(endpoint: Endpoint) -> tuple[float, ...]:
    # Cumulative counters, read between runs (nothing is in flight then).
    counters = server_counters(endpoint.metrics_url or endpoint.url)
    return time.process_time(), cpu_seconds(endpoint.pid), *counters


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


def server_counters(url: str) -> tuple[float, float, float, float]:
    """From /metrics so far: model calls and the requests they answered (the adaptive
    batcher's histogram), and the model's own seconds over its timed calls."""
    response = httpx.get(f"{url}/metrics", timeout=5)
    response.raise_for_status()
    totals: Counter[str] = Counter()
    wanted = {f"{name}_{part}" for name in (BATCH_SIZE, MODEL_SECONDS) for part in ("sum", "count")}
    for family in text_string_to_metric_families(response.text):
        # One series per worker; a request count, not a record count, despite the name.
        for sample in family.samples:
            if sample.name in wanted:
                totals[sample.name] += sample.value
    return (
        totals[f"{BATCH_SIZE}_count"],
        totals[f"{BATCH_SIZE}_sum"],
        totals[f"{MODEL_SECONDS}_sum"],
        totals[f"{MODEL_SECONDS}_count"],
    )


# --- the whole run ---------------------------------------------------------------------


def scikit_learn_bento() -> str:
    """A bento of the same model that runs it with scikit-learn (`compile.enabled: false`)."""
    settings = load_settings()
    without = dataclasses.replace(settings.compile, enabled=False)
    schema = load_schema(paths.SCHEMA)
    return build_bento(dataclasses.replace(settings, compile=without), schema).bento_tag


def input_counting_cost(bundle: ModelBundle, scratch: Path) -> list[dict[str, float]]:
    """bench.input_counting's timings, in a process whose counters are multiprocess ones."""
    scratch.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(scratch)}
    command = [sys.executable, "-m", "bench.input_counting", str(bundle.path)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Pr2prodError(f"bench.input_counting failed:\n{result.stderr[-2000:]}")
    return json.loads(result.stdout)


def describe_input_counting(costs: list[dict[str, float]], rows: list[Row]) -> list[str]:
    """Each request size's counting cost, and its share of the compiled service's fastest
    median latency for that size (the counting is part of that latency)."""
    lines = []
    for cost in costs:
        medians = [
            row.p50_ms
            for row in rows
            if row.mode == COMPILED_SERVED and row.records == cost["records"]
        ]
        share = (
            f", {cost['p50_us'] / 10 / min(medians):.1f}% of its served median" if medians else ""
        )
        lines.append(
            f"bench-serve: counting inputs for drift, {cost['records']:.0f} records per "
            f"request: p50 {cost['p50_us']:.0f} us, p99 {cost['p99_us']:.0f} us{share}"
        )
    return lines


def run_serve_benchmark(
    rows: list[dict], out: Path, duration_s: float = DURATION_S
) -> dict[str, Any]:
    """Measure, print the table and write it as JSON to `out`; returns what was written."""
    if not rows:
        raise Pr2prodError("no rows to send", hint="run `make repro` for the test split")
    compiled_bento = built_bento_tag()
    services = {
        SKLEARN_SERVED: scikit_learn_bento(),
        COMPILED_SERVED: compiled_bento,
        ECHO_SERVED: ECHO_SERVICE,
    }
    batches = {size: request_batches(rows, size) for size in RECORDS_PER_REQUEST}
    bundle = model_bundle(compiled_bento)
    runners = {
        SKLEARN_IN_PROCESS: PipelineRunner(bundle.load_model(), bundle.schema),
        COMPILED_IN_PROCESS: bundle.load_runner(),
    }
    # Other work on the host slows both sides unevenly; the load average shows how much.
    load_before = os.getloadavg()
    measured: list[Row] = []
    # In process first, with no server running, so that nothing else competes for the CPU.
    for (mode, runner), size in itertools.product(runners.items(), RECORDS_PER_REQUEST):
        print(f"bench-serve: {mode} ({runner.runtime}), {size} records per call ...", flush=True)
        numeric = bundle.schema.target.is_numeric
        measurement = measure_in_process(runner, batches[size], duration_s, numeric)
        measured.append(summarise(mode, size, 1, measurement))
    print("bench-serve: counting inputs for drift monitoring, in process ...", flush=True)
    counting = input_counting_cost(bundle, out.parent / "bench-serve-metrics")
    logs = []
    for mode, target in services.items():
        log = out.with_name(f"{out.stem}.{mode.replace(', ', '-').replace(' ', '-')}.log")
        logs.append(log)
        with served(target, log) as endpoint:
            for size, concurrency in itertools.product(RECORDS_PER_REQUEST, CONCURRENCIES):
                print(
                    f"bench-serve: {mode} ({target}), {size} records per request, "
                    f"concurrency {concurrency} ...",
                    flush=True,
                )
                bodies = request_bodies(batches[size])
                measurement = asyncio.run(measure_served(endpoint, bodies, concurrency, duration_s))
                measured.append(summarise(mode, size, concurrency, measurement))
    rows_out = with_echo_shares(measured)
    result = {
        "bentos": {mode: target for mode, target in services.items() if mode != ECHO_SERVED},
        "runtimes": {mode: runner.runtime for mode, runner in runners.items()},
        "compiled": bundle.inference,
        "cpus": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "duration_s": duration_s,
        "warmup_s": WARMUP_S,
        "policy": dataclasses.asdict(bundle.policy),
        "rows": [dataclasses.asdict(row) for row in rows_out],
        "input_counting": counting,
        "verdict": verdict(rows_out),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows_out))
    print("\n".join(describe_input_counting(counting, rows_out)))
    print(describe_verdict(result["verdict"]))
    if load_before[0] > 0.5:
        print(
            f"bench-serve: the load average was {load_before[0]:.1f} before the run on "
            f"{os.cpu_count()} CPUs: other processes took CPU from both sides"
        )
    print(f"bench-serve: wrote {out} (server logs: {', '.join(map(str, logs))})")
    return result


def describe_verdict(result: dict[str, Any]) -> str:
    lines = [f"bench-serve: the compiled service, {len(result['targets'])} targets:"]
    for target in result["targets"]:
        value = "not measured" if target["value"] is None else f"{target['value']:.3g}"
        errors = f", {target['errors']} errors" if target["errors"] else ""
        lines.append(
            f"  {'met   ' if target['met'] else 'MISSED'} {target['target']}: {value}{errors}"
        )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.serve", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--duration", type=float, default=DURATION_S, help="seconds of each measured run"
    )
    args = parser.parse_args(argv)

    def run() -> None:
        rows = split_records(paths.TEST_SPLIT, load_schema(paths.SCHEMA))
        run_serve_benchmark(rows, args.out, duration_s=args.duration)

    return exit_status(run)


if __name__ == "__main__":
    sys.exit(main())
