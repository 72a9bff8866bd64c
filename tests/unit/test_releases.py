"""Scratch workspaces for other releases: the service code, plus what a model needs to load."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from bench import faults
from pr2prod.deploy.releases import SCRATCH_INPUTS, scratch_workspace
from pr2prod.release.bento import BENTOFILE, SERVICE_SOURCES


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A workspace as `make repro` leaves it (the artifacts' contents do not matter here)."""
    folder = tmp_path / "workspace"
    for relative in SCRATCH_INPUTS:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(f"{relative}\n")
    shutil.copy2(REPO_ROOT / BENTOFILE, folder / BENTOFILE)
    shutil.copytree(REPO_ROOT / SERVICE_SOURCES, folder / SERVICE_SOURCES)
    return folder


def test_a_scratch_workspace_copies_the_service_code_and_keeps_the_bentofile(
    workspace: Path, tmp_path: Path
) -> None:
    scratch = scratch_workspace(tmp_path / "scratch", workspace)

    service = Path("serving") / "service.py"
    assert (scratch / SERVICE_SOURCES / service).read_bytes() == (
        workspace / SERVICE_SOURCES / service
    ).read_bytes()
    assert not (scratch / SERVICE_SOURCES).is_symlink()  # BentoML skips what is behind a link
    assert (scratch / BENTOFILE).read_bytes() == (workspace / BENTOFILE).read_bytes()


def test_the_modules_a_model_needs_are_shipped_in_its_bento_alone(
    workspace: Path, tmp_path: Path
) -> None:
    scratch = scratch_workspace(tmp_path / "scratch", workspace, modules=[faults])

    context = scratch / "src"
    assert (context / "bench" / "faults.py").read_text() == Path(faults.__file__).read_text()
    assert (context / "bench" / "__init__.py").is_file()  # `import bench.faults` needs it
    included = yaml.safe_load((scratch / BENTOFILE).read_text())["include"]
    shipped = yaml.safe_load((workspace / BENTOFILE).read_text())["include"]
    assert included == [*shipped, "bench/__init__.py", "bench/faults.py"]
    assert "bench" not in (workspace / BENTOFILE).read_text()
