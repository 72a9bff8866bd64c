"""A model file is unpickled only when it is the one the pipeline recorded.

Unpickling runs code. The attacks: a model object on the DVC remote replaced by a pickle
that runs a command when loaded (it reaches the runner through `dvc repro --pull`), and a
model file changed inside a built bundle. Both are refused before anything is unpickled.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import joblib
import pytest
import yaml

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.model.artifact import file_md5, load_pipeline_model, recorded_md5
from pr2prod.release.bundle import write_bundle
from pr2prod.serving.bundle import MANIFEST_FILE, MODEL_FILE, BundleError, ModelBundle
from pr2prod.settings import load_settings


class RunsWhenUnpickled:
    """A pickle that touches a file when loaded: stands for any command an attacker runs."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """A repository whose dvc.lock records the genuine model's MD5."""
    model = tmp_path / paths.MODEL
    model.parent.mkdir(parents=True)
    joblib.dump({"genuine": True}, model)
    lock = {
        "schema": "2.0",
        "stages": {
            "train": {
                "cmd": "pr2prod train",
                "outs": [{"path": paths.MODEL.as_posix(), "hash": "md5", "md5": file_md5(model)}],
            }
        },
    }
    (tmp_path / paths.DVC_LOCK).write_text(yaml.safe_dump(lock))
    return tmp_path


def test_the_recorded_model_loads(workspace: Path) -> None:
    with contextlib.chdir(workspace):
        assert recorded_md5(paths.MODEL) == file_md5(paths.MODEL)
        assert load_pipeline_model(paths.MODEL) == {"genuine": True}


def test_a_swapped_model_file_is_refused_before_it_is_unpickled(workspace: Path) -> None:
    marker = workspace / "the-payload-ran"
    with contextlib.chdir(workspace):
        joblib.dump(RunsWhenUnpickled(marker), paths.MODEL)

        with pytest.raises(Pr2prodError, match=r"is not the model dvc\.lock records") as raised:
            load_pipeline_model(paths.MODEL)

    assert not marker.exists()
    assert "dvc checkout" in (raised.value.hint or "")


def test_the_payload_does_run_when_loaded_unchecked(workspace: Path) -> None:
    """The attack is real: the same file, loaded without the check, runs its payload."""
    marker = workspace / "the-payload-ran"
    joblib.dump(RunsWhenUnpickled(marker), workspace / "elsewhere.joblib")

    joblib.load(workspace / "elsewhere.joblib")

    assert marker.exists()


def test_a_model_dvc_lock_does_not_record_is_loaded_as_placed(tmp_path: Path) -> None:
    joblib.dump([1, 2], tmp_path / "model.joblib")
    with contextlib.chdir(tmp_path):
        assert recorded_md5(Path("model.joblib")) is None
        assert load_pipeline_model(Path("model.joblib")) == [1, 2]


def bundle(directory: Path, model: object) -> Path:
    source = directory / "outputs"
    source.mkdir()
    joblib.dump(model, source / "model.joblib")
    (source / "model.json").write_text("{}")
    (source / "metrics.json").write_text("{}")
    (source / "schema.yaml").write_text((Path(__file__).parents[2] / "schema.yaml").read_text())
    written = directory / "bundle"
    written.mkdir()
    write_bundle(
        written,
        model_file=source / "model.joblib",
        card_file=source / "model.json",
        schema_file=source / "schema.yaml",
        metrics_file=source / "metrics.json",
        policy=load_settings(Path(__file__).parents[2] / "params.yaml").serving,
        golden={"records": [], "probabilities": []},
    )
    return written


def test_a_bundle_loads_as_written(tmp_path: Path) -> None:
    written = bundle(tmp_path, {"genuine": True})

    loaded = ModelBundle.load(written)

    assert loaded.load_model() == {"genuine": True}
    assert MODEL_FILE in json.loads((written / MANIFEST_FILE).read_text())


def test_a_model_changed_inside_a_bundle_is_refused_before_it_is_unpickled(
    tmp_path: Path,
) -> None:
    written = bundle(tmp_path, {"genuine": True})
    marker = tmp_path / "the-payload-ran"
    joblib.dump(RunsWhenUnpickled(marker), written / MODEL_FILE)

    with pytest.raises(BundleError, match="changed after the bento was built"):
        ModelBundle.load(written).load_model()

    assert not marker.exists()


@pytest.mark.parametrize("name", [MODEL_FILE, "golden.json"])
def test_a_file_left_out_of_the_manifest_is_refused(tmp_path: Path, name: str) -> None:
    written = bundle(tmp_path, {"genuine": True})
    manifest = json.loads((written / MANIFEST_FILE).read_text())
    del manifest[name]
    (written / MANIFEST_FILE).write_text(json.dumps(manifest))

    with pytest.raises(BundleError, match=f"does not list {name}"):
        ModelBundle.load(written)


def test_a_file_missing_from_a_bundle_is_refused(tmp_path: Path) -> None:
    written = bundle(tmp_path, {"genuine": True})
    (written / "golden.json").unlink()

    with pytest.raises(BundleError, match="changed after the bento was built"):
        ModelBundle.load(written)
