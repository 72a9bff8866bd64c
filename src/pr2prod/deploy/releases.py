"""Other releases of this project's model, packaged exactly as the pipeline packages its own.

A rehearsal needs a stable version to roll the workspace's model out against, and the
canary benchmark needs canaries that misbehave. Both are built in a scratch copy of what
the pipeline's last steps read (never touching the workspace's artifacts or results), by
the same steps: a model, then `evaluate` (which also picks the golden rows), then `bento`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path

import joblib

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.serving.build import BENTOFILE, BUILD_CONTEXT, expected_tags
from pr2prod.settings import rewrite_params

# What packaging a model reads, relative to the workspace (the model itself is replaced).
SCRATCH_INPUTS = (
    paths.PARAMS,
    paths.SCHEMA,
    BENTOFILE,
    paths.TRAIN_SPLIT,
    paths.TEST_SPLIT,
    paths.MODEL,
    paths.MODEL_CARD,
)


def scratch_workspace(folder: Path, workspace: Path = Path(".")) -> Path:
    """A fresh copy of the pipeline's inputs and outputs at `folder`, sharing the service code.

    The service sources are linked, not copied, so a release built here runs the same
    code as the workspace's own bento (and its version differs only by the model).
    """
    missing = [str(path) for path in SCRATCH_INPUTS if not (workspace / path).is_file()]
    if missing:
        raise Pr2prodError(f"missing {', '.join(missing)}", hint="run `make repro` first")
    shutil.rmtree(folder, ignore_errors=True)
    for relative in SCRATCH_INPUTS:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspace / relative, folder / relative)
    source = (workspace / BUILD_CONTEXT).resolve()
    (folder / BUILD_CONTEXT).symlink_to(source, target_is_directory=True)
    return folder


def retrained_release(folder: Path, seed: int, workspace: Path = Path(".")) -> str:
    """The pipeline's model retrained with another seed: a genuinely different model version.

    Returns its bento tag.
    """
    scratch_workspace(folder, workspace)
    rewrite_params(folder / paths.PARAMS, {"seed": seed})
    _run_step("train", folder)
    return _evaluate_and_package(folder)


def release_of_model(model: object, folder: Path, workspace: Path = Path(".")) -> str:
    """`model` (any fitted object with classes_ and predict_proba) packaged as a bento."""
    scratch_workspace(folder, workspace)
    joblib.dump(model, folder / paths.MODEL)
    return _evaluate_and_package(folder)


def _evaluate_and_package(folder: Path) -> str:
    _run_step("evaluate", folder)
    _run_step("bento", folder)
    with contextlib.chdir(folder):
        return expected_tags()[1]


def _run_step(step: str, folder: Path) -> None:
    # Each step in a process of its own, as the pipeline runs them: BentoML imports the
    # service module to build a bento, and a second build in one process would reuse the
    # first one's module (and model tag).
    command = [sys.executable, "-m", "pr2prod", step]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise Pr2prodError(
            f"`pr2prod {step}` failed in {folder}:\n{(result.stdout + result.stderr)[-2000:]}"
        )
