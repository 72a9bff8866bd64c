"""`make smoke-image`: start an image as a container, smoke-test it, and remove it.

The container publishes the service's port on a free loopback port and is stopped and
removed by its id whatever happens; on failure its log tail says why.
"""

from __future__ import annotations

import subprocess

from pr2prod.errors import Pr2prodError
from pr2prod.ports import free_port
from pr2prod.release.image import SERVICE_PORT
from pr2prod.release.smoke import smoke_test

LOG_LINES = 40


def smoke_test_image(builder: str, reference: str, timeout: float) -> tuple[bool, str]:
    port = free_port()
    started = subprocess.run(
        [builder, "run", "--detach", "--publish", f"127.0.0.1:{port}:{SERVICE_PORT}", reference],
        capture_output=True,
        text=True,
        check=False,
    )
    if started.returncode != 0:
        raise Pr2prodError(
            f"`{builder} run {reference}` failed: {started.stderr.strip()}",
            hint="build it first (`make image IMAGE=<name:tag>`), or name one that exists",
        )
    container = started.stdout.strip().splitlines()[-1]
    try:
        passed, summary = smoke_test(f"http://127.0.0.1:{port}", timeout=timeout)
        if not passed:
            summary += f"\n--- the container's last {LOG_LINES} log lines\n" + _log_tail(
                builder, container
            )
        return passed, f"{summary}\n(image {reference}, container {container[:12]}, {builder})"
    finally:
        subprocess.run([builder, "stop", "-t", "10", container], capture_output=True, check=False)
        subprocess.run([builder, "rm", "--force", container], capture_output=True, check=False)


def _log_tail(builder: str, container: str) -> str:
    logs = subprocess.run(
        [builder, "logs", "--tail", str(LOG_LINES), container],
        capture_output=True,
        text=True,
        check=False,
    )
    return (logs.stdout + logs.stderr).rstrip() or "(no output)"
