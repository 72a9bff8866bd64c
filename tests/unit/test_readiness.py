"""The one readiness poller: 200 ends the wait; a dead process or the timeout fail it."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pr2prod.ports import free_port
from pr2prod.readiness import NotReady, Watched, wait_until_ready


class Starting:
    """A server that answers 503 to its first `starting_for` requests, then 200."""

    def __init__(self, starting_for: int) -> None:
        self.starting_for = starting_for
        self.paths: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner.paths.append(self.path)
                ready = len(owner.paths) > owner.starting_for
                self.send_response(200 if ready else 503)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"


@pytest.fixture
def starting() -> Iterator[Starting]:
    server = Starting(starting_for=2)
    thread = threading.Thread(target=server.server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.server.shutdown()
    server.server.server_close()


def test_waits_through_answers_other_than_200(starting: Starting) -> None:
    waited = wait_until_ready(starting.url, timeout=10, path="/-/ready")

    assert starting.paths == ["/-/ready"] * 3
    assert 0 < waited < 10


def test_a_server_that_never_answers_200_times_out(starting: Starting) -> None:
    starting.starting_for = 10**6

    with pytest.raises(NotReady, match=r"/readyz did not answer 200 within 0.6 s"):
        wait_until_ready(starting.url, timeout=0.6)

    assert len(starting.paths) >= 2  # polled, not given up after one try


def test_a_process_that_exits_fails_at_once_with_its_log(tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    script = "import sys; print('port already in use'); sys.exit(3)"
    with log.open("w") as output:
        process = subprocess.Popen([sys.executable, "-c", script], stdout=output)
    process.wait(timeout=10)
    nobody = f"http://127.0.0.1:{free_port()}"

    started = time.monotonic()
    with pytest.raises(NotReady, match="exited before") as raised:
        wait_until_ready(nobody, timeout=30, process=Watched.popen(process, log))

    assert time.monotonic() - started < 5  # not the 30 s timeout
    assert "port already in use" in str(raised.value)  # the end of its log
    assert str(log) in raised.value.hint
