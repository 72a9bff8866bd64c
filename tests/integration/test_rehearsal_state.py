"""A CI rehearsal's state, carried from one run to the next through the GitHub fake.

One run leaves a release serving and saves it (`pr2prod rehearsal-save`); the state is
uploaded as main's artifact; the next run, on a runner whose BentoML store is empty,
fetches it (`pr2prod rehearsal-start`), imports the bento, starts it as stable behind the
router with the carried history, and after a failure `pr2prod rehearsal-check` finds
that stable still serves. Real processes, a real bento, real HTTP to the fake.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, run
from github_fake import FakeGitHub

pytestmark = pytest.mark.integration


@pytest.fixture
def first_run(reproduced_project: Path, bento_tag: str, tmp_path: Path) -> Iterator[Path]:
    """A project copy whose rehearsal left `bento_tag` serving, then stopped."""
    project = Path(shutil.copytree(reproduced_project, tmp_path / "first", symlinks=True))
    run("pr2prod", "up", bento_tag, "--port", str(free_port()), cwd=project)
    try:
        yield project
    finally:
        run("pr2prod", "down", cwd=project, check=False)


def outputs(file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in file.read_text().splitlines())


def test_the_next_rehearsal_starts_from_what_the_last_one_left_serving(
    first_run: Path,
    reproduced_project: Path,
    bento_tag: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    saved = run("pr2prod", "rehearsal-save", tmp_path / "state", cwd=first_run)
    assert f"stable={bento_tag}" in saved.stdout
    run("pr2prod", "down", cwd=first_run)
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == [
        "history.jsonl", "stable", "stable.bento",
    ]  # fmt: skip

    second = Path(shutil.copytree(reproduced_project, tmp_path / "second", symlinks=True))
    with FakeGitHub() as fake:
        run_record = fake.add_run("main.yml", artifacts={"deploy-state-local": tmp_path / "state"})
        monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        # A fresh runner: the previous release is in no store but the carried state.
        monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "fresh-bentoml-home"))
        github_output = tmp_path / "github-output"
        try:
            run("pr2prod", "rehearsal-start", "--built", "pr2prod:newer",
                "--outputs", github_output, cwd=second)  # fmt: skip
            assert outputs(github_output) == {
                "stable": bento_tag,
                "run-id": str(run_record["id"]),
                "built": "pr2prod:newer",
            }
            status = json.loads(run("pr2prod", "status", "--json", cwd=second).stdout)
            assert status["stable"]["release"] == bento_tag and status["stable"]["alive"]
            history = (second / ".deploy" / "history.jsonl").read_text()
            assert history == (tmp_path / "state" / "history.jsonl").read_text()

            checked = run("pr2prod", "rehearsal-check", "--previous", bento_tag, cwd=second)
            assert "result=passed" in checked.stdout
        finally:
            run("pr2prod", "down", cwd=second, check=False)
