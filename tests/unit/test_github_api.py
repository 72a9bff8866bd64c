"""The GitHub REST client against the local fake: pages, redirects, errors a user can act on."""

from __future__ import annotations

import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_fake import FakeGitHub

from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


def client(fake: FakeGitHub, token: str | None = None) -> GitHub:
    return GitHub(fake.repository, token or fake.token, fake.url)


def test_a_listing_is_followed_across_every_page(fake: FakeGitHub) -> None:
    for number in range(250):
        fake.add_comment(7, f"comment {number}")
    with client(fake) as github:
        bodies = [comment["body"] for comment in github.paginate("issues/7/comments")]
    assert bodies == [f"comment {number}" for number in range(250)]
    pages = [call for call in fake.calls if call.path.endswith("/issues/7/comments")]
    assert len(pages) == 3


def test_a_wrapped_listing_yields_the_items_inside(fake: FakeGitHub, tmp_path: Path) -> None:
    (tmp_path / "state").mkdir()
    (tmp_path / "state" / "history.json").write_text("[]")
    for _ in range(3):
        fake.add_run("main.yml", artifacts={"deploy-state": tmp_path / "state"})
    fake.add_run("main.yml", branch="feature")
    with client(fake) as github:
        runs = list(
            github.paginate("actions/workflows/main.yml/runs", key="workflow_runs", branch="main")
        )
        assert len(runs) == 3 and all(run["head_branch"] == "main" for run in runs)
        [artifact] = github.paginate(f"actions/runs/{runs[0]['id']}/artifacts", key="artifacts")
        archive = github.download(f"actions/artifacts/{artifact['id']}/zip", tmp_path / "a.zip")
    with zipfile.ZipFile(archive) as contents:
        assert contents.read("history.json") == b"[]"


def test_posting_and_editing_a_comment(fake: FakeGitHub) -> None:
    with client(fake) as github:
        created = github.post("issues/9/comments", {"body": "first"})
        github.patch(f"issues/comments/{created['id']}", {"body": "second"})
    [comment] = fake.posted(9)
    assert comment["body"] == "second" and comment["user"]["login"] == fake.bot_login


def test_a_refusal_says_what_to_check(fake: FakeGitHub) -> None:
    with client(fake, token="wrong") as github, pytest.raises(Pr2prodError) as raised:
        github.get("issues/9/comments")
    assert "401" in str(raised.value) and "Bad credentials" in str(raised.value)
    assert "GITHUB_TOKEN" in raised.value.hint


def test_an_unreachable_api_is_a_readable_error() -> None:
    github = GitHub("octo/pr2prod", "t", "http://127.0.0.1:9")
    with github, pytest.raises(Pr2prodError, match="did not answer"):
        github.get("issues/1/comments")


def test_the_repository_must_be_owner_and_name() -> None:
    with pytest.raises(Pr2prodError, match="not a repository name"):
        GitHub("pr2prod", None)


def test_from_environment_needs_the_repository(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GITHUB_REPOSITORY", raising=False)
    with pytest.raises(Pr2prodError, match="GITHUB_REPOSITORY is not set"):
        GitHub.from_environment()
