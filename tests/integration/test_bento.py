"""Building the bento from the DVC outputs: pinned model, stable versions, image context."""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import onnx
import pytest
import yaml
from conftest import Server, run

from pr2prod.release.bento import BENTO_REQUIREMENTS, BUILD_CONTEXT, SERVING_LOCK, shipped_files
from pr2prod.release.bundle import write_manifest
from pr2prod.serving.bundle import GRAPH_FILE, BundleError, ModelBundle
from pr2prod.serving.inference import ONNXRUNTIME, SCIKIT_LEARN

pytestmark = pytest.mark.integration


def bento_line(project: Path) -> str:
    return run("pr2prod", "bento", cwd=project).stdout.strip().splitlines()[-1]


def tags(line: str) -> tuple[str, str]:
    """('pr2prod-model:...', 'pr2prod:...') from `pr2prod bento`'s report line."""
    words = line.split()
    return words[words.index("model") + 1], words[words.index("bento", 2) + 1]


def test_rebuilding_is_a_no_op_and_new_params_give_a_new_model_version(project: Path) -> None:
    first = bento_line(project)
    again = bento_line(project)
    assert tags(first) == tags(again)
    assert "already built (nothing changed)" in again

    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["hyperparameters"]["n_estimators"] = 120
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("dvc", "repro", cwd=project)
    changed = bento_line(project)

    assert tags(changed)[0] != tags(first)[0]  # a new model version ...
    assert tags(changed)[1] != tags(first)[1]  # ... served by a new bento
    bento = json.loads(run("bentoml", "get", tags(changed)[1], "-o", "json", cwd=project).stdout)
    (service,) = bento["services"]
    assert [model["tag"] for model in service["models"]] == [tags(changed)[0]]
    assert bento["args"] == {"model_tag": tags(changed)[0]}  # pinned, not "latest"


def bento_folder(bento_tag: str) -> Path:
    name, version = bento_tag.split(":")
    return Path(os.environ["BENTOML_HOME"]) / "bentos" / name / version


def test_the_bento_holds_only_the_shipped_files_and_installs_the_runtime_lock(
    reproduced_project: Path, bento_tag: str
) -> None:
    folder = bento_folder(bento_tag)
    with contextlib.chdir(reproduced_project):
        expected = {
            path.relative_to(BUILD_CONTEXT).as_posix()
            for path in shipped_files()
            if path != SERVING_LOCK
        }
    in_bento = {path.relative_to(folder / "src").as_posix() for path in (folder / "src").rglob("*")}

    assert {name for name in in_bento if name.endswith(".py")} == expected
    # Every line hash-checked, no unpinned bentoml appended: `pip --require-hashes` works.
    assert (folder / BENTO_REQUIREMENTS).read_bytes() == (
        reproduced_project / SERVING_LOCK
    ).read_bytes()


def last_line_of_service_script(script: str, project: Path, model_tag: str, metrics: Path) -> str:
    """What `script` prints last, run in a fresh interpreter serving `model_tag`."""
    environment = {
        **os.environ,
        "PR2PROD_MODEL_TAG": model_tag,
        "PROMETHEUS_MULTIPROC_DIR": str(metrics),
    }
    finished = subprocess.run(
        [sys.executable, "-c", script],
        cwd=project,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    )
    return finished.stdout.splitlines()[-1]


def test_the_service_loads_no_pipeline_report_or_deploy_module(
    reproduced_project: Path, bento_tag: str, tmp_path: Path
) -> None:
    """Imported in a fresh interpreter, the service loads only modules the bento ships."""
    manifest = run("bentoml", "get", bento_tag, "-o", "json", cwd=reproduced_project).stdout
    (model,) = json.loads(manifest)["services"][0]["models"]
    script = (
        "import json, sys, pr2prod.serving.service; "
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] == 'pr2prod')))"
    )
    loaded_modules = last_line_of_service_script(script, reproduced_project, model["tag"], tmp_path)
    with contextlib.chdir(reproduced_project):
        shipped = {
            ".".join(path.relative_to(BUILD_CONTEXT).with_suffix("").parts).removesuffix(
                ".__init__"
            )
            for path in shipped_files()
            if path.suffix == ".py"
        }

    modules = set(json.loads(loaded_modules))
    assert "pr2prod.serving.service" in modules
    assert modules <= shipped, f"loaded but not shipped: {sorted(modules - shipped)}"


def test_the_image_context_holds_the_bento_its_model_and_a_labelled_containerfile(
    reproduced_project: Path, bento_tag: str
) -> None:
    output = run("pr2prod", "image", "--context-only", cwd=reproduced_project).stdout
    context = reproduced_project / "build" / "image"

    assert "wrote the build context" in output
    containerfile = (context / "Containerfile").read_text()
    assert "COPY bento /home/bentoml/bento" in containerfile  # the bento, models included
    assert not re.search(r"@[A-Z_]+@", containerfile)  # every marker filled in
    manifest = yaml.safe_load((context / "bento" / "bento.yaml").read_text())
    (model,) = manifest["services"][0]["models"]
    name, version = model["tag"].split(":")
    assert (context / "bento" / "models" / name / version / "model.joblib").is_file()
    assert (context / "bento" / "env" / "python" / "requirements.txt").is_file()
    assert f'LABEL io.pr2prod.model="{model["tag"]}"' in containerfile
    assert 'LABEL org.opencontainers.image.revision="' in containerfile
    assert 'ENV BENTOML_DO_NOT_TRACK="true"' in containerfile  # the bentofile's envs


def test_the_smoke_test_passes_against_the_served_model(
    reproduced_project: Path, served_bento: Server
) -> None:
    result = run("pr2prod", "smoke", "--url", served_bento.url, cwd=reproduced_project)

    assert "answered 8 golden rows as evaluated" in result.stdout


def test_the_smoke_test_fails_when_nothing_answers(reproduced_project: Path) -> None:
    result = run(
        "pr2prod",
        "smoke",
        "--url",
        "http://127.0.0.1:9",
        "--timeout",
        "2",
        cwd=reproduced_project,
        check=False,
    )

    assert result.returncode == 1
    assert "was not ready within 2 s" in result.stderr


@pytest.fixture(scope="module")
def service_module(bento_tag: str, reproduced_project: Path, tmp_path_factory):
    """The service module imported in this process, serving the reproduced project's model."""
    manifest = run("bentoml", "get", bento_tag, "-o", "json", cwd=reproduced_project).stdout
    (model,) = json.loads(manifest)["services"][0]["models"]
    metrics_dir = tmp_path_factory.mktemp("prometheus")
    # Set while the module's tests run, then taken back: a later test's subprocesses (any
    # prometheus_client user) would otherwise inherit multiprocess mode from this worker.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PR2PROD_MODEL_TAG", model["tag"])
        patch.setenv("PROMETHEUS_MULTIPROC_DIR", str(metrics_dir))
        yield importlib.import_module("pr2prod.serving.service")


def test_in_process_the_service_is_ready_and_predicts_the_golden_rows(service_module) -> None:
    service = service_module.Classifier()
    golden = service_module.BUNDLE.golden
    records = [service_module.Record.model_validate(r) for r in golden["records"]]

    predictions = service.predict(records)

    assert service.__is_ready__()
    for prediction, expected in zip(predictions, golden["probabilities"], strict=True):
        assert list(prediction.probabilities.values()) == pytest.approx(expected, abs=1e-5)


def test_in_process_a_tampered_model_is_not_ready(service_module, monkeypatch) -> None:
    golden = service_module.BUNDLE.golden
    shifted = [[p[1], p[0]] for p in golden["probabilities"]]  # what a wrong model would say
    monkeypatch.setitem(golden, "probabilities", shifted)

    assert not service_module.Classifier().__is_ready__()


def test_the_service_runs_the_compiled_model_proven_equal_on_the_test_set(service_module) -> None:
    inference = service_module.BUNDLE.card["inference"]

    assert inference["runtime"] == ONNXRUNTIME
    parity = inference["parity"]
    assert parity["rows"] == 114 + 8  # every test row and every golden row
    assert parity["classes_differing"] == 0
    assert parity["max_probability_gap"] <= parity["tolerance"]
    assert service_module.Classifier().model.runtime == ONNXRUNTIME


def test_in_process_a_tampered_compiled_model_is_not_ready(
    service_module, monkeypatch, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(service_module.BUNDLE.path, tmp_path / "bundle"))
    graph = onnx.load(bundle / GRAPH_FILE)
    (trees,) = [node for node in graph.graph.node if node.op_type == "TreeEnsemble"]
    (weights,) = [attribute for attribute in trees.attribute if attribute.name == "leaf_weights"]
    halved = 0.5 * onnx.numpy_helper.to_array(weights.t)  # every leaf's votes halved
    weights.t.CopyFrom(onnx.numpy_helper.from_array(halved, weights.t.name))
    onnx.save(graph, bundle / GRAPH_FILE)

    with pytest.raises(BundleError, match="changed after the bento was built"):
        ModelBundle.load(bundle)
    # A graph the manifest vouches for but that answers otherwise (a faulty converter or
    # runtime) is caught by the golden rows.
    write_manifest(bundle)
    monkeypatch.setattr(service_module, "BUNDLE", ModelBundle.load(bundle))

    assert not service_module.Classifier().__is_ready__()


def test_a_model_the_converter_cannot_handle_is_served_by_scikit_learn_saying_why(
    project: Path, tmp_path: Path
) -> None:
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"] = {
        "estimator": "sklearn.semi_supervised.LabelPropagation",
        "hyperparameters": {"kernel": "knn"},
    }
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run("dvc", "repro", cwd=project)

    output = run("pr2prod", "bento", cwd=project).stdout
    assert "the service runs the scikit-learn pipeline: the ONNX converter cannot" in output
    # The service in a process of its own (a second `bentoml serve` on this BENTOML_HOME
    # would empty the session's served bento's metrics): ready, GET /model, one answer.
    script = (
        "import json, pr2prod.serving.service as s; c = s.Classifier(); "
        "record = s.Record.model_validate(s.BUNDLE.golden['records'][0]); "
        "print(json.dumps({'ready': c.__is_ready__(), "
        "'model': json.loads(s.model_metadata(None).body), "
        "'answer': c.predict([record])[0].model_dump()}))"
    )
    model_tag = tags(output.strip().splitlines()[-1])[0]
    result = json.loads(last_line_of_service_script(script, project, model_tag, tmp_path))
    metadata = result["model"]

    inference = metadata["card"]["inference"]
    assert inference["runtime"] == SCIKIT_LEARN
    assert "LabelPropagation" in inference["reason"]
    assert result["ready"]  # and answering with scikit-learn
    expected = metadata["golden"]["probabilities"][0]
    assert list(result["answer"]["probabilities"].values()) == pytest.approx(expected, abs=1e-5)
