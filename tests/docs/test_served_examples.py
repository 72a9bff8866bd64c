"""The serving examples work as written: `make serve`, and every command sent to its address."""

from __future__ import annotations

from pathlib import Path

import psutil
import pytest
from command_coverage import SERVED_ADDRESS
from conftest import Server, start_server, stop_server
from doc_pages import Command, commands
from shell import failure_message, run_documented

from pr2prod.ports import free_port

pytestmark = pytest.mark.integration

SERVED = [command for command in commands() if SERVED_ADDRESS in command.text]

# What a served example's output must contain, by a part of the command that picks it out.
EXPECTED = {
    "/readyz": "200",
    "-d @docs/examples/request.json": '"predicted": "',
    "/model": '"model_tag":"pr2prod-model:',
    "/metrics": "pr2prod_predictions_total{",
    '"mean_radius": -1': '"loc":["records",0,"mean_radius"]',
    "make smoke": "golden rows as evaluated",
    "make monitor": "report in build/monitor/drift.md",
    "/feedback": '{"accepted":2}',
}


def expected_output(command: Command) -> str:
    found = [output for part, output in EXPECTED.items() if part in command.text]
    assert len(found) == 1, f"{command}\nsay in EXPECTED what its output must contain"
    return found[0]


def test_every_expectation_belongs_to_a_documented_example() -> None:
    unused = [part for part in EXPECTED if not any(part in c.text for c in SERVED)]

    assert SERVED and unused == []


@pytest.mark.parametrize("command", SERVED, ids=str)
def test_a_served_example_works(
    command: Command, served_bento: Server, reproduced_project: Path
) -> None:
    expected = expected_output(command)

    result = run_documented(
        command.text, reproduced_project, replace={SERVED_ADDRESS: served_bento.url}
    )

    assert result.returncode == 0, failure_message(command, result)
    assert expected in result.stdout, failure_message(command, result)


def test_make_serve_serves_the_bento(project: Path) -> None:
    """`make serve`, on a free port: the bento answers, and stopping make stops it all."""
    port = free_port()
    # A BentoML home of its own: `bentoml serve` empties its home's metrics folder at start,
    # which would blank the /metrics of the session's served bento (served_bento).
    command = ["make", "serve", "VENV=", f"PORT={port}", f"BENTOML_HOME={project / '.bentoml'}"]
    process, url = start_server(command, project, project / "serve.log", port, 180)
    children = psutil.Process(process.pid).children(recursive=True)
    stop_server(process)

    assert url.endswith(f":{port}") and children
    _, alive = psutil.wait_procs(children, timeout=15)
    assert alive == [], f"still running after make stopped: {alive}"
