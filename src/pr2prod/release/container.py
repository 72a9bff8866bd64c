"""`make smoke-image`: start an image as a container, smoke-test it, and remove it.

The container publishes the service's port on a free loopback port and is stopped and
removed by its id whatever happens; on failure its log tail says why. The image itself
must say what it is (its version, revision and model labels) and run as a user who is
not root.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from pr2prod.errors import Pr2prodError
from pr2prod.ports import free_port
from pr2prod.readiness import Watched
from pr2prod.release.image import SERVICE_PORT, inspect_image
from pr2prod.release.smoke import smoke_test

LOG_LINES = 40
# What main.yml reads back from the image, and what a deployment names it by.
REQUIRED_LABELS = (
    "org.opencontainers.image.version",
    "org.opencontainers.image.revision",
    "io.pr2prod.model",
)


def smoke_test_image(builder: str, reference: str, timeout: float) -> tuple[bool, str]:
    problems = image_problems(inspect_image(builder, reference))
    passed, summary = _smoke_test_container(builder, reference, timeout)
    if problems:
        return False, "\n".join([*(f"smoke: {problem}" for problem in problems), summary])
    return passed, summary


def image_problems(facts: dict) -> list[str]:
    """What is wrong with an image's description (`docker/podman image inspect`)."""
    config = facts.get("Config") or {}
    labels = config.get("Labels") or {}
    problems = []
    missing = [name for name in REQUIRED_LABELS if not labels.get(name)]
    if missing:
        problems.append(f"the image lacks the labels {', '.join(missing)}")
    user = (config.get("User") or "").split(":")[0]
    if user in ("", "0", "root"):
        problems.append(f"the image runs as root (USER {user or 'unset'}), not as a service user")
    return problems


def _smoke_test_container(builder: str, reference: str, timeout: float) -> tuple[bool, str]:
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
        with tempfile.TemporaryDirectory() as scratch:
            log = Path(scratch) / "container.log"

            def running() -> bool:
                # An exited container's log is kept for the smoke test's message.
                if _inspect_state(builder, container) == "true":
                    return True
                log.write_text(_log_tail(builder, container))
                return False

            watched = Watched(f"the container {container[:12]}", running, log)
            passed, summary = smoke_test(f"http://127.0.0.1:{port}", timeout, watched)
            if not passed and not log.is_file():  # still running: its log is not shown yet
                summary += f"\n--- the container's last {LOG_LINES} log lines\n" + _log_tail(
                    builder, container
                )
        return passed, f"{summary}\n(image {reference}, container {container[:12]}, {builder})"
    finally:
        subprocess.run([builder, "stop", "-t", "10", container], capture_output=True, check=False)
        subprocess.run([builder, "rm", "--force", container], capture_output=True, check=False)


def _inspect_state(builder: str, container: str) -> str:
    state = subprocess.run(
        [builder, "inspect", "--format", "{{.State.Running}}", container],
        capture_output=True,
        text=True,
        check=False,
    )
    return state.stdout.strip()


def _log_tail(builder: str, container: str) -> str:
    logs = subprocess.run(
        [builder, "logs", "--tail", str(LOG_LINES), container],
        capture_output=True,
        text=True,
        check=False,
    )
    return (logs.stdout + logs.stderr).rstrip() or "(no output)"
