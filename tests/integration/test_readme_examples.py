"""The curl examples in the README work as written, against the served bento."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT, Server

pytestmark = pytest.mark.integration

README_ADDRESS = "http://127.0.0.1:3000"


def curl_examples() -> list[str]:
    text = (REPO_ROOT / "README.md").read_text()
    block = text.split("<!-- curl-examples:", 1)[1].split("```bash", 1)[1].split("```", 1)[0]
    return [line for line in block.splitlines() if line.startswith("curl ")]


def test_the_readme_has_curl_examples() -> None:
    assert len(curl_examples()) >= 4


@pytest.mark.parametrize("command", curl_examples())
def test_a_readme_curl_example_works(
    command: str, served_bento: Server, reproduced_project: Path
) -> None:
    local = command.replace(README_ADDRESS, served_bento.url)
    result = subprocess.run(
        local, shell=True, cwd=reproduced_project, capture_output=True, text=True, timeout=60
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip(), f"no output from: {command}"
    if "/predict" in command and "@docs/examples" in command:
        assert re.search(r'"predicted": "(benign|malignant)"', result.stdout)
    if 'mean_radius": -1' in command:
        assert "greater_than_equal" in result.stdout and "mean_radius" in result.stdout
