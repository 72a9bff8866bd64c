"""A CI rehearsal's state, carried from one run to the next through the GitHub fake.

One run leaves a release serving and saves its name and the history (`pr2prod
rehearsal-save`); the state is uploaded as main's artifact; the next run, on a runner whose
BentoML store is empty, fetches it (`pr2prod rehearsal-start`), imports nothing from it,
builds the stand-in stable on the runner and starts it behind the router with the carried
history, and after a failure `pr2prod rehearsal-check` finds that stable still serves.
Real processes, real bentos, real HTTP to the fake.
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
    assert sorted(p.name for p in (tmp_path / "state").iterdir()) == ["history.jsonl", "stable"]

    second = Path(shutil.copytree(reproduced_project, tmp_path / "second", symlinks=True))
    with FakeGitHub() as fake:
        current = run("git", "rev-parse", "HEAD", cwd=second).stdout.strip()
        fake.main_commits.append(current)
        run_record = fake.add_run(
            "main.yml", head_sha=current, artifacts={"deploy-state-local": tmp_path / "state"}
        )
        monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
        monkeypatch.setenv("GITHUB_TOKEN", fake.token)
        monkeypatch.setenv("GITHUB_API_URL", fake.url)
        # A fresh runner: the previous release is in no store but the carried state.
        monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "fresh-bentoml-home"))
        github_output = tmp_path / "github-output"
        try:
            run("pr2prod", "rehearsal-start", "--built", "pr2prod:newer",
                "--outputs", github_output, cwd=second)  # fmt: skip
            started = outputs(github_output)
            stand_in = started["stable"]
            assert started == {
                "stable": stand_in,
                "run-id": str(run_record["id"]),
                "built": "pr2prod:newer",
            }
            assert stand_in.startswith("pr2prod:") and stand_in != bento_tag
            status = json.loads(run("pr2prod", "status", "--json", cwd=second).stdout)
            assert status["stable"]["release"] == stand_in and status["stable"]["alive"]
            tags = run("bentoml", "list", "-o", "json", cwd=second).stdout
            assert bento_tag not in tags, "the carried release was imported"
            history = (second / ".deploy" / "history.jsonl").read_text()
            assert history == (tmp_path / "state" / "history.jsonl").read_text()

            checked = run("pr2prod", "rehearsal-check", "--previous", stand_in, cwd=second)
            assert "result=passed" in checked.stdout
        finally:
            run("pr2prod", "down", cwd=second, check=False)
