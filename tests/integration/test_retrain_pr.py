"""`make retrain-pr`: labelled rows reach the DVC remote and one pull request carries data.dvc."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import run
from github_fake import point_environment_at
from github_git_fake import FakeGitHubRepository

from pr2prod.monitor.retrain import BRANCH

pytestmark = pytest.mark.integration

DATA = Path("data") / "breast_cancer.csv"


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHubRepository]:
    with FakeGitHubRepository() as server:
        point_environment_at(server, monkeypatch)
        yield server


def labelled_rows(project: Path, out: Path, count: int, nudge: float) -> Path:
    """`count` rows of the data with one cell moved a little: new records, not duplicates."""
    with (project / DATA).open(newline="") as handle:
        rows = list(csv.DictReader(handle))[:count]
    for row in rows:
        row["mean_texture"] = f"{float(row['mean_texture']) + nudge:.4f}"
    with out.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return out


def test_labelled_rows_become_one_retraining_pull_request(
    project: Path, fake: FakeGitHubRepository, tmp_path: Path
) -> None:
    remote = tmp_path / "remote"
    run("dvc", "remote", "add", "--local", "-d", "store", str(remote), cwd=project)
    committed = (project / "data.dvc").read_text()
    rows_before = len((project / DATA).read_text().splitlines())

    first = labelled_rows(project, tmp_path / "first.csv", 12, 0.0137)
    output = run("make", "retrain-pr", "VENV=", f"LABELLED={first}", cwd=project).stdout

    assert "retrain-pr: 12 labelled rows added; opened" in output
    assert len((project / DATA).read_text().splitlines()) == rows_before + 12
    data_dvc = (project / "data.dvc").read_text()
    assert data_dvc != committed
    assert fake.files_on(BRANCH) == {"data.dvc": data_dvc}
    (pull,) = fake.pulls
    assert pull["title"] == "Retrain with 12 newly labelled rows"
    # The remote holds the new data: a clone with only data.dvc could pull it.
    assert (
        run("dvc", "status", "--cloud", "data.dvc", cwd=project)
        .stdout.strip()
        .endswith("Cache and remote 'store' are in sync.")
    )

    second = labelled_rows(project, tmp_path / "second.csv", 5, 0.0271)
    output = run("make", "retrain-pr", "VENV=", f"LABELLED={second}", cwd=project).stdout
    assert "retrain-pr: 5 labelled rows added; updated" in output
    assert len(fake.pulls) == 1
    assert fake.files_on(BRANCH) == {"data.dvc": (project / "data.dvc").read_text()}


def test_rows_that_break_the_schema_change_nothing(
    project: Path, fake: FakeGitHubRepository, tmp_path: Path
) -> None:
    run("dvc", "remote", "add", "--local", "-d", "store", str(tmp_path / "remote"), cwd=project)
    before = (project / DATA).read_text()
    bad = labelled_rows(project, tmp_path / "bad.csv", 3, 500.0)  # beyond mean_texture's max

    result = run("pr2prod", "retrain-pr", bad, cwd=project, check=False)

    assert result.returncode == 2 and "fails validation" in result.stderr
    assert (project / DATA).read_text() == before and fake.pulls == []


def test_without_a_dvc_remote_it_says_to_configure_one(
    project: Path, fake: FakeGitHubRepository, tmp_path: Path
) -> None:
    result = run(
        "pr2prod",
        "retrain-pr",
        labelled_rows(project, tmp_path / "x.csv", 2, 0.01),
        cwd=project,
        check=False,
    )
    assert result.returncode == 2 and "dvc-remotes.md" in result.stderr
