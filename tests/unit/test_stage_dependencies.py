"""dvc.yaml's stage dependencies are the code each stage runs: no fewer files, no more.

A stage's command is `pr2prod <subcommand>`. What it runs is the CLI's dispatch (cli.py and
the command registry), the module that declares the subcommand, the imports inside the
subcommand's own handler, and everything those import in turn. A module the stage runs but
dvc.yaml omits would let `dvc repro` call a stale model up to date; a module dvc.yaml lists
but the stage never runs makes it re-train for nothing.
"""

from __future__ import annotations

import ast
import hashlib
import inspect
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT
from import_graph import SOURCES, closure, differences

from pr2prod.cli import build_parser
from pr2prod.commands import REGISTRY

# Run by every subcommand before its handler: parsing arguments and dispatching.
DISPATCH = ("pr2prod.cli", "pr2prod.commands")


def stage_code(subcommand: str) -> set[Path]:
    """The files `pr2prod <subcommand>` runs: dispatch, its handler and all it imports."""
    build_parser()  # registers every subcommand
    handler = REGISTRY[subcommand].handler
    declaring = handler.__module__
    # Of the declaring module, its module-level imports and this handler run; the other
    # handlers it declares do not.
    tree = ast.parse(Path(inspect.getfile(handler)).read_text())
    module_level = [node for node in tree.body if isinstance(node, ast.Import | ast.ImportFrom)]
    handler_body = ast.parse(inspect.getsource(handler))
    return closure({*DISPATCH, declaring}, {declaring: [*module_level, handler_body]})


def dvc_stages() -> dict[str, dict]:
    return yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]


def source_deps(stage: dict) -> set[Path]:
    """The stage's dependencies under src/, as files (a folder stands for every file in it)."""
    files: set[Path] = set()
    for dep in stage.get("deps", []):
        path = REPO_ROOT / dep
        if path.is_relative_to(SOURCES):
            files.update(path.rglob("*.py") if path.is_dir() else {path})
    return files


@pytest.mark.parametrize("name", sorted(dvc_stages()))
def test_a_stage_depends_on_exactly_the_code_it_runs(name: str) -> None:
    stage = dvc_stages()[name]
    program, subcommand = stage["cmd"].split()
    assert program == "pr2prod", f"stage {name}: expected a `pr2prod` subcommand"
    runs = {path.resolve() for path in stage_code(subcommand)}
    listed = {path.resolve() for path in source_deps(stage)}

    missing, unused = differences(
        runs, listed, lambda path: f"      - {path.relative_to(REPO_ROOT)}"
    )

    assert not missing, (
        f"dvc.yaml stage {name} runs code it does not depend on; add to its deps:\n{missing}"
    )
    assert not unused, f"dvc.yaml stage {name} depends on code it never runs; remove:\n{unused}"


def test_the_closure_follows_lazy_and_package_imports() -> None:
    """The analysis itself: a handler's lazy import and the packages above a module count."""
    files = {path.relative_to(SOURCES).as_posix() for path in stage_code("train")}
    assert "pr2prod/model/train.py" in files  # imported inside the handler
    assert "pr2prod/model/__init__.py" in files  # runs before pr2prod.model.train
    assert "pr2prod/commands/stages.py" in files  # declares `train`
    assert "pr2prod/deploy/controller.py" not in files  # another subcommand's code


def locked_file_deps() -> list[tuple[str, str, str]]:
    """(stage, path, md5) for every dependency dvc.lock records as a single file in git."""
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())["stages"]
    return [
        (stage, dep["path"], dep["md5"])
        for stage, entry in lock.items()
        for dep in entry.get("deps", [])
        if not dep["md5"].endswith(".dir") and not dep["path"].startswith("artifacts/")
    ]


def test_dvc_lock_records_the_stage_code_and_config_as_they_are_now() -> None:
    """A committed dvc.lock older than the code makes CI's reproduction differ from it.

    Checked here, in a second, rather than only by the slow reproduction test: change a
    stage's code, schema.yaml or a tracked result, and this fails until `make repro`
    records the change.
    """
    stale = sorted(
        f"{stage}: {path}"
        for stage, path, md5 in locked_file_deps()
        if hashlib.md5((REPO_ROOT / path).read_bytes()).hexdigest() != md5
    )
    assert not stale, (
        "dvc.lock is older than these dependencies; run `make repro` and commit dvc.lock "
        "(and results/ if it changed):\n  " + "\n  ".join(stale)
    )


def test_dvc_lock_records_the_params_as_they_are_now() -> None:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())["stages"]
    stale = []
    for stage, entry in lock.items():
        for key, locked in entry.get("params", {}).get("params.yaml", {}).items():
            value = params
            for part in key.split("."):
                value = value.get(part) if isinstance(value, dict) else None
            if value != locked:
                stale.append(f"{stage}: {key} is {value!r} in params.yaml, {locked!r} in dvc.lock")
    assert not stale, "run `make repro` and commit dvc.lock and results/:\n  " + "\n  ".join(stale)
