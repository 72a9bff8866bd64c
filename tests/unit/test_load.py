"""The steady load: open loop (slow answers do not slow the senders) and honest counts."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from pr2prod.deploy.load import LoadCounts, SteadyLoad, shuffled_cycles

ANSWER_SECONDS = 0.2


class SlowHandler(BaseHTTPRequestHandler):
    """Answers every POST after ANSWER_SECONDS: 500 when the record asks for it, else 200.

    It also notes the most requests it ever had in hand at once.
    """

    lock = threading.Lock()
    in_hand = 0
    most_in_hand = 0

    def do_POST(self) -> None:  # the name http.server dispatches to
        body = self.rfile.read(int(self.headers["content-length"]))
        with SlowHandler.lock:
            SlowHandler.in_hand += 1
            SlowHandler.most_in_hand = max(SlowHandler.most_in_hand, SlowHandler.in_hand)
        time.sleep(ANSWER_SECONDS)
        with SlowHandler.lock:
            SlowHandler.in_hand -= 1
        self.send_response(500 if b'"fail"' in body else 200)
        if b'"fail"' in body:  # as a router names the version that failed
            self.send_header("x-pr2prod-backend", "canary")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


def wait_for(condition: Callable[[], bool], timeout: float = 60) -> None:
    """Until `condition` holds: a busy machine may take long, the test still says what holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the load never got there"
        time.sleep(0.05)


@pytest.fixture
def slow_server() -> Iterator[str]:
    SlowHandler.in_hand = SlowHandler.most_in_hand = 0
    server = ThreadingHTTPServer(("127.0.0.1", 0), SlowHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    thread.join(timeout=5)


def test_requests_leave_on_schedule_however_slow_the_answers(slow_server: str) -> None:
    with SteadyLoad(slow_server, [{"x": 1}], rate=40) as load:
        wait_for(lambda: load.counts.sent >= 20)

    # One sender waiting for each answer would never have two requests out at once; at 40
    # a second with answers taking 0.2 s, about eight are.
    assert SlowHandler.most_in_hand >= 2
    assert load.counts.failed == 0


def test_every_answer_is_counted_by_status(slow_server: str) -> None:
    with SteadyLoad(slow_server, [{"x": 1}, {"x": "fail"}], rate=20) as load:
        wait_for(lambda: load.counts.statuses.get("500", 0) >= 4)

    statuses = load.counts.statuses
    assert statuses["500"] >= 4  # each pass sends both records once, in either order
    assert abs(statuses["200"] - statuses["500"]) <= 2
    assert load.counts.failed == statuses["500"] and load.counts.sent == sum(statuses.values())
    assert load.counts.failed_by == {"canary": statuses["500"]}


def test_requests_to_nowhere_are_failures_not_crashes() -> None:
    with SteadyLoad("http://127.0.0.1:9", [{"x": 1}], rate=20) as load:  # discard port
        time.sleep(0.3)

    assert load.counts.sent == load.counts.failed > 0
    assert set(load.counts.statuses) == {"ConnectError"}


def test_counts_add_up() -> None:
    total = LoadCounts(3, 1, {"200": 2, "500": 1}, failed_by={"canary": 1}) + LoadCounts(
        2, 1, {"200": 1, "503": 1}, late=1, failed_by={"stable": 1}
    )
    assert total == LoadCounts(
        5, 2, {"200": 3, "500": 1, "503": 1}, late=1, failed_by={"canary": 1, "stable": 1}
    )


def test_replayed_records_come_once_per_pass_in_a_new_order_each_time() -> None:
    records = [{"row": index} for index in range(44)]
    replay = shuffled_cycles(records)
    passes = [[next(replay)["row"] for _ in range(44)] for _ in range(3)]

    assert all(sorted(one_pass) == list(range(44)) for one_pass in passes)
    assert passes[0] != passes[1] != passes[2]
    # At 25 % the canary takes every fourth request: over passes it sees every row.
    every_fourth = {row for one_pass in passes for row in one_pass[3::4]}
    assert len(every_fourth) > 11
