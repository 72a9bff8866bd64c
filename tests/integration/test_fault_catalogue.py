"""Each fault in the catalogue stops `dvc repro` at validate, named, before training runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import run
from data_faults import DATA_FAULTS, DataFault

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def faulty_project(reproduced_project: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # One copy for the whole catalogue: each test breaks the pristine data in its own way.
    copy = tmp_path_factory.mktemp("faults") / "project"
    return Path(shutil.copytree(reproduced_project, copy, symlinks=True))


@pytest.fixture(scope="module")
def pristine_data(reproduced_project: Path) -> str:
    return (reproduced_project / "data" / "breast_cancer.csv").read_text()


@pytest.mark.parametrize("fault", DATA_FAULTS, ids=lambda fault: fault.name)
def test_validate_fails_and_training_does_not_run(
    fault: DataFault, faulty_project: Path, pristine_data: str
) -> None:
    data = faulty_project / "data" / "breast_cancer.csv"
    model = faulty_project / "artifacts" / "model" / "model.joblib"
    model_before = model.stat().st_mtime_ns
    data.write_text(fault.inject(pristine_data))

    result = run("dvc", "repro", cwd=faulty_project, check=False)

    assert result.returncode != 0
    output = result.stdout + result.stderr
    assert "Running stage 'validate'" in output
    assert "Running stage 'train'" not in output
    assert model.stat().st_mtime_ns == model_before
    assert fault.rule in output
    assert (fault.column or "(table)") in output
