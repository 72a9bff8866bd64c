"""Other releases of this project's model, packaged exactly as the pipeline packages its own.

A rehearsal needs a stable version to roll the workspace's model out against, and the
canary benchmark needs canaries that misbehave. Both are built in a scratch copy of what
the pipeline's last steps read (never touching the workspace's artifacts or results), by
the same steps: a model, then `evaluate` (which also picks the golden rows), then `bento`.

A model whose classes are defined outside pr2prod (the benchmark's faulty models) needs
their module wherever it is unpickled: `modules` are copied into the scratch build context,
included in that release's bento, and importable by the scratch steps.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import joblib
import yaml

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.release.bento import (
    BENTOFILE,
    BUILD_CONTEXT,
    SERVICE_SOURCES,
    SERVING_LOCK,
    expected_tags,
)
from pr2prod.settings import rewrite_params

# What packaging a model reads, relative to the workspace (the model itself is replaced).
SCRATCH_INPUTS = (
    paths.PARAMS,
    paths.SCHEMA,
    BENTOFILE,
    SERVING_LOCK,
    paths.TRAIN_SPLIT,
    paths.TEST_SPLIT,
    paths.MODEL,
    paths.MODEL_CARD,
)


def scratch_workspace(
    folder: Path, workspace: Path = Path("."), modules: Sequence[ModuleType] = ()
) -> Path:
    """A fresh copy of the pipeline's inputs and outputs at `folder`, with the service code.

    The service sources are the workspace's own, so a release built here runs the same
    code as the workspace's bento (and without `modules`, its version differs only by the
    model). They are copied, not linked: BentoML packages no file behind a link.
    """
    missing = [str(path) for path in SCRATCH_INPUTS if not (workspace / path).is_file()]
    if missing:
        raise Pr2prodError(f"missing {', '.join(missing)}", hint="run `make repro` first")
    shutil.rmtree(folder, ignore_errors=True)
    for relative in SCRATCH_INPUTS:
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(workspace / relative, folder / relative)
    shutil.copytree(
        workspace / SERVICE_SOURCES,
        folder / SERVICE_SOURCES,
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    shipped = [path for module in modules for path in _copy_module(module, folder / BUILD_CONTEXT)]
    if shipped:
        bentofile = folder / BENTOFILE
        build = yaml.safe_load(bentofile.read_text())
        build["include"] = [*build.get("include", []), *shipped]
        bentofile.write_text(yaml.safe_dump(build, sort_keys=False))
    return folder


def _copy_module(module: ModuleType, context: Path) -> list[str]:
    """Copy a plain module (and its packages' __init__.py) into the build context, where
    `import module.__name__` finds it; return the copied files' paths within the context."""
    parts = module.__name__.split(".")
    source = Path(module.__file__ or "")
    if source.suffix != ".py" or source.name == "__init__.py":
        raise Pr2prodError(
            f"{module.__name__} is not a plain .py module and cannot be shipped with a release"
        )
    root = source.parents[len(parts) - 1]  # the folder `import` finds the top package in
    files = [Path(*parts[:depth], "__init__.py") for depth in range(1, len(parts))]
    files.append(source.relative_to(root))
    for relative in files:
        (context / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(root / relative, context / relative)
    return [relative.as_posix() for relative in files]


def retrained_release(folder: Path, seed: int, workspace: Path = Path(".")) -> str:
    """The pipeline's model retrained with another seed: a genuinely different model version.

    Returns its bento tag.
    """
    scratch_workspace(folder, workspace)
    rewrite_params(folder / paths.PARAMS, {"seed": seed})
    _run_step("train", folder)
    return _evaluate_and_package(folder)


def release_of_model(
    model: object,
    folder: Path,
    workspace: Path = Path("."),
    modules: Sequence[ModuleType] = (),
) -> str:
    """`model` (any fitted object with classes_ and predict_proba) packaged as a bento.

    `modules`: where the model's classes are defined, when not in pr2prod or a library the
    bento installs; they are shipped in this bento alone.
    """
    scratch_workspace(folder, workspace, modules)
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
    # The scratch build context first on the path: `evaluate` unpickles the model, which may
    # need the modules shipped there.
    env = dict(os.environ)  # the child's environment: this one, with the context prepended
    context = str((folder / BUILD_CONTEXT).resolve())
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [context, env.get("PYTHONPATH")]))
    result = subprocess.run(
        command, cwd=folder, env=env, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise Pr2prodError(
            f"`pr2prod {step}` failed in {folder}:\n{(result.stdout + result.stderr)[-2000:]}"
        )
