"""`pr2prod propose-lock`: re-locked files become one pull request, against a local GitHub."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_git_fake import FakeGitHubRepository

from pr2prod.cli import main
from pr2prod.github.api import GitHub
from pr2prod.github.lock_update import BRANCH, TITLE, propose_lock_update

LOCK = Path("requirements.lock")
SERVING_LOCK = Path("src") / "requirements-serving.lock"


def pinned(**versions: str) -> str:
    return "".join(
        f"{name}=={version} \\\n    --hash=sha256:{'0' * 64}\n"
        for name, version in versions.items()
    )


def git(*arguments: str) -> str:
    return subprocess.run(
        ["git", *arguments], capture_output=True, text=True, check=True
    ).stdout.strip()


@pytest.fixture
def checkout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A checkout of main whose two lock files are committed."""
    monkeypatch.chdir(tmp_path)
    git("init", "--quiet", "--initial-branch=main")
    SERVING_LOCK.parent.mkdir()
    LOCK.write_text(pinned(alpha="1.0", beta="2.0", pytest="8.0"))
    SERVING_LOCK.write_text(pinned(alpha="1.0", beta="2.0"))
    git("add", "--all")
    git("commit", "--quiet", "-m", "locked")
    return tmp_path


@pytest.fixture
def fake() -> Iterator[FakeGitHubRepository]:
    with FakeGitHubRepository() as server:
        yield server


def propose(fake: FakeGitHubRepository):
    with GitHub(fake.repository, fake.token, fake.url) as github:
        return propose_lock_update(github, [LOCK, SERVING_LOCK])


def test_locks_as_committed_propose_nothing_and_call_nothing(
    checkout: Path, fake: FakeGitHubRepository
) -> None:
    proposal = propose(fake)

    assert proposal.url is None and proposal.changed == []
    assert fake.calls == [] and fake.pulls == []


def test_a_changed_lock_becomes_one_commit_on_main_and_a_pull_request(
    checkout: Path, fake: FakeGitHubRepository
) -> None:
    LOCK.write_text(pinned(alpha="1.1", beta="2.0", pytest="8.1", gamma="0.1"))

    proposal = propose(fake)

    assert proposal.opened and proposal.changed == [LOCK]
    assert fake.files_on(BRANCH) == {"requirements.lock": LOCK.read_text()}
    commit = fake.commits[fake.refs[f"refs/heads/{BRANCH}"]]
    assert commit["parents"] == [git("rev-parse", "HEAD")]
    assert fake.trees[commit["tree"]]["base_tree"] == git("rev-parse", "HEAD^{tree}")
    (pull,) = fake.pulls
    assert pull["title"] == TITLE and pull["base"]["ref"] == "main"
    assert proposal.url == pull["html_url"]
    for line in ("- alpha: 1.0 -> 1.1", "- pytest: 8.0 -> 8.1", "- gamma: (new) -> 0.1"):
        assert line in pull["body"]
    assert "beta" not in pull["body"]  # unchanged pins are not listed


def test_a_second_run_moves_the_branch_and_keeps_one_pull_request(
    checkout: Path, fake: FakeGitHubRepository
) -> None:
    LOCK.write_text(pinned(alpha="1.1", beta="2.0", pytest="8.0"))
    first = propose(fake)
    LOCK.write_text(pinned(alpha="1.2", beta="2.0", pytest="8.0"))
    SERVING_LOCK.write_text(pinned(alpha="1.2", beta="2.0"))

    second = propose(fake)

    assert first.opened and not second.opened and first.url == second.url
    assert len(fake.pulls) == 1
    assert fake.files_on(BRANCH) == {
        "requirements.lock": LOCK.read_text(),
        "src/requirements-serving.lock": SERVING_LOCK.read_text(),
    }
    assert "- alpha: 1.0 -> 1.2" in fake.pulls[0]["body"]  # the text follows the branch


def test_after_a_closed_pull_request_a_new_one_is_opened_on_the_same_branch(
    checkout: Path, fake: FakeGitHubRepository
) -> None:
    LOCK.write_text(pinned(alpha="1.1", beta="2.0", pytest="8.0"))
    propose(fake)
    fake.pulls[0]["state"] = "closed"

    again = propose(fake)

    assert again.opened and len(fake.pulls) == 2
    assert len([ref for ref in fake.refs if ref == f"refs/heads/{BRANCH}"]) == 1


def test_the_subcommand_reads_github_from_the_environment_and_says_what_it_did(
    checkout: Path,
    fake: FakeGitHubRepository,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    SERVING_LOCK.write_text(pinned(alpha="1.1", beta="2.0"))

    assert main(["propose-lock", str(LOCK), str(SERVING_LOCK)]) == 0

    out = capsys.readouterr().out
    assert f"opened {fake.pulls[0]['html_url']}" in out
    assert "src/requirements-serving.lock" in out
    monkeypatch.setenv("GITHUB_TOKEN", "a-wrong-token")
    assert main(["propose-lock", str(LOCK), str(SERVING_LOCK)]) != 0  # 401, explained
    assert "GITHUB_TOKEN" in capsys.readouterr().err
