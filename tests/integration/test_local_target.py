"""The local target with real processes: the router over HTTP, then the bento behind it."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
from conftest import assert_refused_for_another_release, free_port, start_server, stop_server

from pr2prod import environment
from pr2prod.data.records import split_records
from pr2prod.deploy.local import ROUTER_MODULE, LocalTarget, RouterRecord
from pr2prod.deploy.target import Deployed
from pr2prod.errors import Pr2prodError
from pr2prod.readiness import wait_until_ready
from pr2prod.schema import load_schema
from pr2prod.settings import CanarySettings

pytestmark = pytest.mark.integration
HEADER_TIMEOUT = 1.0  # the router's, shortened: how long a client may take to send a request head

# A backend that answers every GET and POST with a fixed status and says who it is
# (GET /healthz: 200 whatever the status, so the fixture knows when it listens).
BACKEND = r"""
import json, sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

name, port, status = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])

class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def answer(self):
        size = int(self.headers.get("content-length") or 0)
        seen = {"backend": name, "method": self.command, "path": self.path,
                "body": self.rfile.read(size).decode(), "x-test": self.headers.get("x-test"),
                "x-private": self.headers.get("x-private")}
        body = json.dumps(seen).encode()
        self.send_response(200 if self.path == "/healthz" else status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.send_header("x-backend", name)
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = answer

    def log_message(self, *args):
        pass

ThreadingHTTPServer.request_queue_size = 128  # the default 5 resets a burst of connections
ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
"""


@pytest.fixture(scope="module")
def backends(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """Two healthy backends, one that answers 500, and an address that refuses connections."""
    logs = tmp_path_factory.mktemp("backends")
    processes, urls = [], {}
    try:
        for name, status in (("stable", 200), ("canary", 200), ("broken", 500)):
            port = free_port()
            command = [sys.executable, "-c", BACKEND, name, str(port), str(status)]
            process, urls[name] = start_server(
                command, logs, logs / f"{name}.log", port, timeout=20, path="/healthz"
            )
            processes.append(process)
        urls["refusing"] = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        yield urls
    finally:
        for process in processes:
            stop_server(process)


@pytest.fixture
def router(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[RouterRecord]:
    port, admin_port, token = free_port(), free_port(), "integration-token"
    monkeypatch.setenv(environment.PR2PROD_ROUTER_TOKEN.name, token)
    command = [sys.executable, "-m", ROUTER_MODULE, "--port", str(port)]
    command += ["--admin-port", str(admin_port), "--header-timeout", str(HEADER_TIMEOUT)]
    log = tmp_path / "router.log"
    # Its health probe is on the admin port (the traffic port proxies every path).
    process, _ = start_server(command, tmp_path, log, admin_port, timeout=20, path="/-/healthz")
    try:
        url = f"http://127.0.0.1:{port}"
        yield RouterRecord(process.pid, port, url, str(log), admin_port, token)
    finally:
        stop_server(process)


def configure(router: RouterRecord, **config: Any) -> None:
    response = router.admin("PUT", "backends", json=config)
    assert response.status_code == 200, response.text


def send_many(url: str, count: int, concurrency: int = 20) -> list[httpx.Response]:
    """`count` POSTs, `concurrency` at a time: the router must keep exact shares under load."""

    async def main() -> list[httpx.Response]:
        gate = asyncio.Semaphore(concurrency)
        async with httpx.AsyncClient(timeout=10) as client:

            async def one(i: int) -> httpx.Response:
                async with gate:
                    return await client.post(f"{url}/predict?i={i}", json={"i": i})

            return await asyncio.gather(*(one(i) for i in range(count)))

    return asyncio.run(main())


def answered_by(responses: list[httpx.Response]) -> Counter[str]:
    return Counter(response.headers["x-backend"] for response in responses)


@pytest.mark.parametrize("weight", [0, 10, 25, 50, 100])
def test_traffic_splits_by_weight(
    router: RouterRecord, backends: dict[str, str], weight: int
) -> None:
    configure(router, stable=backends["stable"], canary=backends["canary"], canary_weight=weight)

    responses = send_many(router.url, 200)

    assert {response.status_code for response in responses} == {200}
    assert answered_by(responses) == Counter(canary=2 * weight, stable=200 - 2 * weight)
    stats = router.admin("GET", "stats").json()
    assert stats["canary"]["routed"] == 2 * weight
    assert stats["requests"] == 200 and stats["client_failures"] == 0


def test_requests_and_answers_pass_through_unchanged(
    router: RouterRecord, backends: dict[str, str]
) -> None:
    configure(router, stable=backends["stable"])

    response = httpx.post(
        f"{router.url}/some/path?a=1&b=%20",
        content=b'{"records": []}',
        headers={"x-test": "kept", "connection": "x-private", "x-private": "dropped"},
    )

    assert response.status_code == 200
    assert response.headers["x-backend"] == "stable"
    assert response.headers["x-pr2prod-backend"] == "stable"
    assert response.json() == {
        "backend": "stable",
        "method": "POST",
        "path": "/some/path?a=1&b=%20",
        "body": '{"records": []}',
        "x-test": "kept",
        "x-private": None,  # named by Connection: hop-by-hop
    }


@pytest.mark.parametrize("failure", ["broken", "refusing"])
def test_retry_on_stable_hides_canary_failures_from_clients(
    router: RouterRecord, backends: dict[str, str], failure: str
) -> None:
    configure(
        router,
        stable=backends["stable"],
        canary=backends[failure],
        canary_weight=50,
        retry_on_stable=True,
    )

    responses = send_many(router.url, 100)

    assert {response.status_code for response in responses} == {200}  # no client saw a failure
    assert answered_by(responses) == {"stable": 100}
    stats = router.admin("GET", "stats").json()
    assert stats["client_failures"] == 0
    if failure == "broken":  # 5xx answers: the canary keeps its share (the analysis judges)
        assert stats["canary"]["responses_5xx"] == stats["canary"]["retried_on_stable"] == 50
        assert stats["stable"]["requests"] == 100 and not stats["canary_ejected"]
    else:  # refused: ejected once the first refusals came back (20 requests are in flight)
        refused = stats["canary"]["connection_errors"]
        assert 1 <= refused <= 20 and refused == stats["canary"]["retried_on_stable"]
        assert stats["canary"]["routed"] == refused and stats["canary_ejected"]


def test_without_retry_canary_failures_reach_clients(
    router: RouterRecord, backends: dict[str, str]
) -> None:
    configure(
        router,
        stable=backends["stable"],
        canary=backends["broken"],
        canary_weight=25,
        retry_on_stable=False,
    )
    failing = send_many(router.url, 100)
    configure(
        router,
        stable=backends["stable"],
        canary=backends["refusing"],
        canary_weight=25,
        retry_on_stable=False,
    )
    refused = send_many(router.url, 100)

    assert Counter(r.status_code for r in failing) == {200: 75, 500: 25}
    statuses = Counter(r.status_code for r in refused)
    stats = router.admin("GET", "stats").json()
    # Refused requests fail until the canary is ejected: those already sent, no more.
    assert 1 <= statuses[502] == stats["canary"]["connection_errors"] <= 20
    assert statuses[200] == 100 - statuses[502]
    assert stats["canary"]["responses_5xx"] == 25
    assert stats["canary"]["client_failures"] == stats["client_failures"] == 25 + statuses[502]
    assert stats["canary"]["retried_on_stable"] == 0


def test_the_admin_api_refuses_bad_backends(router: RouterRecord, backends: dict[str, str]) -> None:
    assert httpx.get(f"{router.url}/predict").status_code == 503  # nothing configured yet
    refused = router.admin("PUT", "backends", json={"stable": "not a url"})
    assert refused.status_code == 400 and "http://host:port" in refused.json()["error"]
    configure(router, stable=backends["stable"], canary=backends["canary"], canary_weight=10)
    assert router.admin("GET", "backends").json() == {
        "stable": backends["stable"],
        "canary": backends["canary"],
        "canary_weight": 10,
        "retry_on_stable": True,
    }


def test_the_traffic_port_never_obeys_admin_requests(
    router: RouterRecord, backends: dict[str, str]
) -> None:
    configure(router, stable=backends["stable"])
    metadata = {"stable": "http://169.254.169.254:80"}

    through_traffic = httpx.put(f"{router.url}/-/backends", json=metadata)
    no_token = httpx.put(f"http://127.0.0.1:{router.admin_port}/-/backends", json=metadata)
    off_host = router.admin("PUT", "backends", json=metadata)

    assert through_traffic.headers["x-pr2prod-backend"] == "stable"  # proxied, not obeyed
    assert no_token.status_code == 401
    assert off_host.status_code == 400 and "forwards only to" in off_host.json()["error"]
    assert router.admin("GET", "backends").json()["stable"] == backends["stable"]


def test_idle_and_trickling_connections_neither_starve_requests_nor_stay_open(
    router: RouterRecord, backends: dict[str, str]
) -> None:
    """More silent connections than the router's request limit, and some sending a request
    head a byte at a time: real requests are still answered, and those connections are
    closed once the header timeout has passed."""
    configure(router, stable=backends["stable"])
    idle = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(450)]
    trickling = [socket.create_connection(("127.0.0.1", router.port)) for _ in range(10)]
    try:
        for connection in trickling:
            connection.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\n")  # never finished

        answered = send_many(router.url, 40, concurrency=10)

        assert Counter(response.status_code for response in answered) == {200: 40}
        for connection in [*idle, *trickling]:
            connection.settimeout(HEADER_TIMEOUT + 30)  # generous: a slow, shared machine
            assert connection.recv(1) == b""  # closed by the router
    finally:
        for connection in [*idle, *trickling]:
            connection.close()


# --- LocalTarget with the real bento


class Processes:
    """Every process a target ran, remembered with its start time (psutil.Process compares
    both), so teardown can stop exactly those by PID even when the target's `down` fails."""

    def __init__(self, target: LocalTarget) -> None:
        self.target = target
        self.roots: dict[psutil.Process, int] = {}  # process -> PID of the process it serves

    def remember(self) -> None:
        state = self.target.load()
        for record in (state.router, state.stable, state.canary, *state.retiring):
            if record is None:
                continue
            with contextlib.suppress(psutil.NoSuchProcess):
                root = psutil.Process(record.pid)
                for process in [root, *root.children(recursive=True)]:
                    self.roots.setdefault(process, record.pid)

    def family(self, pid: int) -> list[psutil.Process]:
        """The serve process `pid` and its workers, as last remembered."""
        return [process for process, root in self.roots.items() if root == pid]

    def kill_leftovers(self) -> list[int]:
        left = [process for process in self.roots if running(process)]
        for process in left:
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(left, timeout=10)
        return [process.pid for process in left]


def running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def gone(processes: Iterable[psutil.Process]) -> bool:
    return not any(running(process) for process in processes)


@pytest.fixture
def deployment(tmp_path: Path, bento_tag: str) -> Iterator[tuple[LocalTarget, Processes]]:
    target = LocalTarget(
        tmp_path / "deploy",
        settings=CanarySettings(drain_seconds=0.5),
        bento_store=Path(os.environ["BENTOML_HOME"]),  # where the `bento_tag` fixture built it
        ready_timeout=90,
    )
    processes = Processes(target)
    try:
        yield target, processes
    finally:
        processes.remember()  # whatever the state names now, even after a failure
        try:
            target.down()
        finally:
            leftovers = processes.kill_leftovers()
        assert not leftovers, f"processes still running after down(): {leftovers}"


@pytest.fixture(scope="module")
def records(reproduced_project: Path) -> list[dict[str, Any]]:
    schema = load_schema(reproduced_project / "schema.yaml")
    return split_records(reproduced_project / "artifacts" / "split" / "test.csv", schema)[:3]


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as session:
        yield session


def predict(client: httpx.Client, records: list[dict[str, Any]]) -> httpx.Response:
    response = client.post("/predict", json={"records": records})
    assert response.status_code == 200, response.text
    assert len(response.json()) == len(records)
    return response


def wait_ready(url: str, timeout: float = 90) -> None:
    """What the controller does after start_canary: wait for /readyz itself."""
    wait_until_ready(url, timeout)


def predictions_counted(url: str) -> float:
    """POST /predict requests in a version's own /metrics."""
    lines = httpx.get(f"{url}/metrics").text.splitlines()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in lines
        if line.startswith("bentoml_service_request_total{") and 'endpoint="/predict"' in line
    )


def test_a_local_deployment_from_up_to_down(
    deployment: tuple[LocalTarget, Processes],
    bento_tag: str,
    records: list[dict[str, Any]],
    client: httpx.Client,
) -> None:
    target, processes = deployment

    # up: the router and a ready stable
    status = target.up(bento_tag)
    processes.remember()
    stable = status["stable"]
    assert stable["release"] == bento_tag and stable["alive"] and status["canary"] is None
    assert target.running() == {"stable": Deployed(bento_tag, stable["url"])}
    client.base_url = httpx.URL(target.entry_url())
    assert predict(client, records).headers["x-pr2prod-backend"] == "stable"

    # a canary at 50 %: both versions serve, each counts its own requests
    canary = target.start_canary(bento_tag)
    processes.remember()
    assert canary.url != stable["url"]
    wait_ready(canary.url)
    target.set_canary_weight(50, bento_tag)
    served = Counter(predict(client, records).headers["x-pr2prod-backend"] for _ in range(20))
    assert served == {"stable": 10, "canary": 10}
    stats = target.stats()
    assert stats["canary"]["routed"] == 10 and stats["client_failures"] == 0
    # The admin token stays in the owner-only state file: never printed by `make status`.
    router = target.load().router
    assert "token" not in target.status()["router"] and router.token not in repr(router)
    assert target.state_file.stat().st_mode & 0o077 == 0
    # Separate BENTOML_HOMEs: starting the canary did not wipe stable's metrics.
    assert predictions_counted(canary.url) == 10
    assert predictions_counted(stable["url"]) == 11

    # another rollout's calls, naming the release it means, leave this canary alone
    assert_refused_for_another_release(target, bento_tag, "pr2prod:0000000000000000")
    assert target.load().canary_weight == 50 and target.load().stable.url == stable["url"]
    assert set(target.running()) == {"stable", "canary"}
    served = Counter(predict(client, records).headers["x-pr2prod-backend"] for _ in range(20))
    assert served == {"stable": 10, "canary": 10}

    # abort: the canary's processes are gone, stable keeps serving
    first_canary = processes.family(target.load().canary.pid)
    target.abort_canary(bento_tag)
    assert gone(first_canary)
    assert set(target.running()) == {"stable"} and target.status()["canary"] is None
    assert predict(client, records).headers["x-pr2prod-backend"] == "stable"

    # a canary that dies is seen as dead by a fresh target (the next command) and replaced
    wait_ready(target.start_canary(bento_tag).url)  # its worker runs too
    processes.remember()
    dead = target.load().canary
    dead_family = processes.family(dead.pid)
    assert len(dead_family) >= 2
    os.kill(dead.pid, signal.SIGKILL)
    psutil.Process(dead.pid).wait(timeout=10)  # dead (and reaped: it is our child)
    again = LocalTarget(target.state_dir, settings=target.settings, bento_store=target.bento_store)
    assert set(again.running()) == {"stable"} and again.status()["canary"]["alive"] is False
    with pytest.raises(Pr2prodError, match="not running"):
        again.set_canary_weight(10, bento_tag)
    canary = again.start_canary(bento_tag)
    processes.remember()
    assert gone(dead_family)  # its orphaned worker too
    wait_ready(canary.url)

    # promote: the canary's process is stable now; the old stable's processes are gone
    old_stable = processes.family(stable["pid"])
    new_pid = target.load().canary.pid
    target.promote(bento_tag)
    assert target.running() == {"stable": canary}
    assert target.load().stable.pid == new_pid and gone(old_stable)
    assert predict(client, records).headers["x-pr2prod-backend"] == "stable"

    # down: nothing left
    target.down()
    assert gone(processes.roots)
    assert target.running() == {} and target.status()["router"] is None
    with pytest.raises(Pr2prodError):
        target.entry_url()


def test_a_first_deployment_needs_no_up(
    deployment: tuple[LocalTarget, Processes],
    bento_tag: str,
    records: list[dict[str, Any]],
    client: httpx.Client,
) -> None:
    """The controller's first deploy: start_canary with nothing running, 100 %, promote."""
    target, processes = deployment

    canary = target.start_canary(bento_tag)
    processes.remember()
    client.base_url = httpx.URL(target.entry_url())
    assert client.post("/predict", json={"records": records}).status_code == 503  # weight 0
    wait_ready(canary.url)
    target.set_canary_weight(100, bento_tag)
    predict(client, records)
    target.promote(bento_tag)

    assert target.running() == {"stable": canary}
    pid = target.load().stable.pid
    assert target.up(bento_tag)["stable"]["pid"] == pid  # up keeps the running stable
    predict(client, records)


HOLD_THE_LOCK = """
import sys, time
from pathlib import Path
from pr2prod.deploy.local import LocalTarget
with LocalTarget(Path(sys.argv[1])).locked("rollout of pr2prod:aaaa"):
    print("holding", flush=True)
    time.sleep(600)
"""


def test_a_second_rollout_fails_at_once_while_another_holds_the_lock(tmp_path: Path) -> None:
    """The lock of a whole rollout, held by another process: refused with its holder's name,
    waited for when asked to, and free again once that process is gone, however it ended."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_THE_LOCK, str(tmp_path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "holding\n"
        second = LocalTarget(tmp_path)
        with pytest.raises(Pr2prodError, match="locked by rollout of pr2prod:aaaa since") as raised:
            second.locked("rollout of pr2prod:bbbb").__enter__()
        assert "make deploy-status" in raised.value.hint
        with pytest.raises(Pr2prodError, match="locked by rollout of pr2prod:aaaa"):
            second.locked("rollout of pr2prod:bbbb", wait_seconds=1).__enter__()
    finally:
        holder.kill()  # a holder that dies without a word releases it all the same
        holder.wait(timeout=30)
    with LocalTarget(tmp_path).locked("rollout of pr2prod:bbbb"):
        holding = json.loads((tmp_path / "rollout.lock").read_text())
        assert holding["holder"] == "rollout of pr2prod:bbbb"
