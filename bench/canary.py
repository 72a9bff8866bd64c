"""`python -m bench.canary` (`make bench-canary`): how fast a bad canary is caught; router cost.

A local deployment of its own (build/bench-canary/: router, versions, history) serves the
workspace's bento as stable. Each fault of `faults.BAD_CANARIES`, and a canary whose
process is killed mid-rollout, is rolled out with params.yaml's canary settings while
clients send a steady 50 requests/s through the router, once with the router's
retry-on-stable and once without. Measured for each run:

- traffic -> decision: from the canary's first routed request (or, for the crash, from the
  kill) to the controller's rollback decision;
- traffic -> stable only: from the same start to the last request routed to the canary;
- client failures: what clients saw during the whole rollout, and their share.

Then the router's own cost: closed-loop clients straight to stable, and through the router.
Prints a table; writes build/bench-canary.json. Numbers, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import os
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import joblib
from tabulate import tabulate

from bench import faults
from bench.command import exit_status
from bench.serve import Endpoint, measure_served, percentile, request_bodies
from pr2prod import paths
from pr2prod.deploy.assembly import standalone_controller, synthetic_records
from pr2prod.deploy.load import SteadyLoad
from pr2prod.deploy.local import LocalTarget, crash
from pr2prod.deploy.releases import release_of_model
from pr2prod.release.bento import built_bento_tag
from pr2prod.settings import CanarySettings, load_settings

BENCH_DIR = Path("build") / "bench-canary"
DEFAULT_OUT = Path("build") / "bench-canary.json"
CLIENT_RATE = 50.0  # requests per second, the rate the rollback target is stated for
TARGET_SECONDS = 30.0  # every bad canary rolled back within this long of getting traffic
CRASH = "crashes mid-rollout"
CRASH_AFTER_SECONDS = 3.0  # of canary traffic before the kill
POLL_SECONDS = 0.05  # how often the router's counters are read
OVERHEAD_CONCURRENCY, OVERHEAD_SECONDS = 8, 8.0


@dataclass(frozen=True)
class FaultRun:
    fault: str
    retry_on_stable: bool
    decision: str
    reason: str
    canary_requests: int  # routed to the canary
    to_decision_s: float | None  # None: the canary never got traffic
    to_stable_only_s: float | None
    clients_sent: int
    clients_failed: int

    @property
    def failure_share(self) -> float:
        return self.clients_failed / self.clients_sent if self.clients_sent else 0.0


class CanaryTraffic:
    """Watches the router's counters: when the canary got its first and last request."""

    def __init__(self, target: LocalTarget) -> None:
        self.target = target
        self.first: float | None = None
        self.last: float | None = None
        self.routed = 0
        self._baseline = 0  # the canary's count when watching began
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> CanaryTraffic:
        self._baseline = self._canary_routed()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _canary_routed(self) -> int:
        stats = self.target.stats()
        if stats is None:
            raise httpx.ConnectError("the router does not answer")
        return int(stats["canary"]["routed"])

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            try:
                routed = self._canary_routed() - self._baseline
            except httpx.HTTPError:
                continue
            if routed > self.routed:
                now = time.time()
                self.first = self.first or now
                self.last = now
                self.routed = routed


def run_canary_benchmark(
    stable_release: str, out: Path = DEFAULT_OUT, rate: float = CLIENT_RATE
) -> dict[str, Any]:
    settings = load_settings().canary
    records = synthetic_records()
    genuine = joblib.load(paths.MODEL)
    state = BENCH_DIR / "deploy"
    LocalTarget(state / "local").down()  # whatever an interrupted run left, by PID
    shutil.rmtree(state, ignore_errors=True)  # and its half-done rollout and history
    runs: list[FaultRun] = []
    with_retry = LocalTarget(state / "local", settings=settings)
    try:
        print(f"bench-canary: starting {stable_release} as stable", flush=True)
        with_retry.up(stable_release)
        releases = _build_releases(genuine)
        for name, release in releases.items():
            modes = (True,) if name == "never ready" else (True, False)  # no traffic either way
            for retry in modes:
                run_settings = dataclasses.replace(settings, retry_on_stable=retry)
                target = LocalTarget(state / "local", settings=run_settings)
                print(
                    f"bench-canary: {name}, {'with' if retry else 'without'} retry-on-stable",
                    flush=True,
                )
                runs.append(_roll_out(name, release, target, run_settings, records, rate, state))
        overhead = _router_overhead(with_retry, records)
    finally:
        with_retry.down()
    result = {
        "stable": stable_release,
        "client_rate": rate,
        "cpus": os.cpu_count(),
        "canary_settings": dataclasses.asdict(settings),
        "runs": [dict(dataclasses.asdict(run), failure_share=run.failure_share) for run in runs],
        "router_overhead": overhead,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(fault_table(runs))
    print(overhead_table(overhead))
    slowest = max((run.to_stable_only_s or 0.0) for run in runs)
    verdict = "met" if slowest <= TARGET_SECONDS else "missed"
    print(
        f"bench-canary: target {verdict}: every bad canary off traffic within "
        f"{TARGET_SECONDS:g} s of getting it (slowest {slowest:.1f} s) at {rate:g} req/s"
    )
    print(f"bench-canary: wrote {out}")
    return result


def _build_releases(genuine: object) -> dict[str, str]:
    releases = {}
    for name, fault in faults.BAD_CANARIES.items():
        print(f"bench-canary: packaging the canary '{name}'", flush=True)
        releases[name] = release_of(fault.wrap(genuine))
    # A crash needs no faulty model: a genuine retrained release, killed mid-rollout.
    releases[CRASH] = release_of(faults.Identical(genuine, nonce=1))
    return releases


def release_of(model: faults.ModelWrapper) -> str:
    """The workspace's bento with `model` in place of its own (and the code to unpickle it)."""
    return release_of_model(model, BENCH_DIR / "release", modules=[faults])


def _roll_out(
    name: str,
    release: str,
    target: LocalTarget,
    settings: CanarySettings,
    records: list[dict],
    rate: float,
    state: Path,
) -> FaultRun:
    decided: list[float] = []  # when the controller said it rolls back (before draining)

    def note(line: str) -> None:
        if line.startswith("deploy: rolling back"):
            decided.append(time.time())

    controller = standalone_controller(target, settings, state, say=note)
    crashing = _crash_after(target, CRASH_AFTER_SECONDS) if name == CRASH else _nothing()
    with SteadyLoad(target.entry_url(), records, rate) as clients:
        with CanaryTraffic(target) as traffic, crashing as crashed_at:
            decision = controller.deploy(release)
        time.sleep(0.5)  # answers to requests already sent count too
    start = crashed_at() if name == CRASH else traffic.first
    return FaultRun(
        fault=name,
        retry_on_stable=settings.retry_on_stable,
        decision=decision.decision,
        reason=decision.reason,
        canary_requests=traffic.routed,
        to_decision_s=None if start is None else (decided or [decision.time])[0] - start,
        to_stable_only_s=None if start is None or traffic.last is None else traffic.last - start,
        clients_sent=clients.counts.sent,
        clients_failed=clients.counts.failed,
    )


@contextmanager
def _nothing() -> Iterator[Callable[[], float | None]]:
    yield lambda: None


@contextmanager
def _crash_after(target: LocalTarget, seconds: float) -> Iterator[Callable[[], float | None]]:
    """Kill the canary's whole process group once it has served `seconds` of traffic."""
    killed: list[float] = []
    stop = threading.Event()

    def kill_when_due() -> None:
        while not stop.wait(POLL_SECONDS):
            state = target.load()
            if state.canary and state.canary_weight > 0:
                if stop.wait(seconds):
                    return  # the rollout ended first
                crash(state.canary)
                killed.append(time.time())
                return

    thread = threading.Thread(target=kill_when_due, daemon=True)
    thread.start()
    try:
        yield lambda: killed[0] if killed else None
    finally:
        stop.set()
        thread.join(timeout=5)


def _router_overhead(target: LocalTarget, records: list[dict]) -> dict[str, Any]:
    """Closed-loop single-record clients straight to stable, then through the router."""
    state = target.load()
    stable = state.stable
    if stable is None or state.router is None:
        return {}
    bodies = request_bodies([[record] for record in records])
    figures = {}
    for label, url in (
        ("straight to stable", stable.url),
        ("through the router", state.router.url),
    ):
        print(f"bench-canary: router overhead, {label}", flush=True)
        # Only speed is reported here, not CPU time; the model's counters are stable's own.
        endpoint = Endpoint(url, stable.pid, metrics_url=stable.url)
        measured = asyncio.run(
            measure_served(endpoint, bodies, OVERHEAD_CONCURRENCY, OVERHEAD_SECONDS)
        )
        done = len(measured.latencies_s)
        figures[label] = {
            "requests_per_s": done / measured.elapsed_s,
            "p50_ms": percentile(measured.latencies_s, 50) * 1000,
            "p99_ms": percentile(measured.latencies_s, 99) * 1000,
            "errors": measured.errors,
        }
    return figures


def fault_table(runs: list[FaultRun]) -> str:
    rows = [
        [
            run.fault,
            "yes" if run.retry_on_stable else "no",
            run.decision,
            run.canary_requests,
            _seconds(run.to_decision_s),
            _seconds(run.to_stable_only_s),
            f"{run.clients_failed} / {run.clients_sent} ({run.failure_share:.2%})",
        ]
        for run in runs
    ]
    headers = [
        "canary", "retry on stable", "decision", "canary requests", "traffic -> decision",
        "traffic -> stable only", "client failures",
    ]  # fmt: skip
    return tabulate(rows, headers=headers)


def overhead_table(figures: dict[str, Any]) -> str:
    rows = [
        [label, f"{f['requests_per_s']:.0f}", f"{f['p50_ms']:.1f}", f"{f['p99_ms']:.1f}",
         sum(f["errors"].values())]
        for label, f in figures.items()
    ]  # fmt: skip
    headers = ["single-record requests", "req/s", "p50 ms", "p99 ms", "errors"]
    return tabulate(rows, headers=headers)


def _seconds(value: float | None) -> str:
    return "no traffic" if value is None else f"{value:.1f} s"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.canary", description=__doc__)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument(
        "--rate", type=float, default=CLIENT_RATE, help="requests/s of client traffic"
    )
    args = parser.parse_args(argv)
    return exit_status(lambda: run_canary_benchmark(built_bento_tag(), args.out, rate=args.rate))


if __name__ == "__main__":
    sys.exit(main())
