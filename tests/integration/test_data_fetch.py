"""`pr2prod data` without a remote: the embedded sample, checked against data.dvc's hash."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import copy_project, run

pytestmark = pytest.mark.integration


@pytest.fixture
def fresh_clone(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "clone")


def test_a_fresh_clone_gets_the_sample_verified_against_data_dvc(fresh_clone: Path) -> None:
    first = run("pr2prod", "data", cwd=fresh_clone)
    second = run("pr2prod", "data", cwd=fresh_clone)

    assert "matches data.dvc" in first.stdout
    assert "already matches" in second.stdout
    assert run("dvc", "status", "data.dvc", cwd=fresh_clone).stdout.strip().endswith("up to date.")


def test_data_dvc_for_other_data_without_a_remote_is_an_error(fresh_clone: Path) -> None:
    data_dvc = fresh_clone / "data.dvc"
    data_dvc.write_text(data_dvc.read_text().replace("md5: ", "md5: 0", 1).replace("dir", "dir", 1))
    text = data_dvc.read_text()
    digest = text.split("md5: ")[1].split(".dir")[0]
    data_dvc.write_text(text.replace(digest, "0" * 32))

    result = run("pr2prod", "data", cwd=fresh_clone, check=False)

    assert result.returncode == 2
    assert "not the embedded sample" in result.stderr
    assert "what to do:" in result.stderr
    assert not (fresh_clone / "data").exists()  # no unverified stand-in is left behind


def test_edited_data_is_not_overwritten(fresh_clone: Path) -> None:
    run("pr2prod", "data", cwd=fresh_clone)
    data = fresh_clone / "data" / "breast_cancer.csv"
    edited = data.read_text() + data.read_text().splitlines(keepends=True)[1]
    data.write_text(edited)

    result = run("pr2prod", "data", cwd=fresh_clone, check=False)

    assert result.returncode == 2
    assert "dvc add data" in result.stderr
    assert data.read_text() == edited
