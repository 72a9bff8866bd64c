"""The environment variables pr2prod reads are exactly those in its one table."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from pr2prod import environment
from pr2prod.environment import VARIABLES, Variable

SOURCES = REPO_ROOT / "src" / "pr2prod"
TABLE_MODULE = SOURCES / "environment.py"


def other_modules() -> list[tuple[Path, ast.Module]]:
    return [
        (path, ast.parse(path.read_text(), str(path)))
        for path in sorted(SOURCES.rglob("*.py"))
        if path != TABLE_MODULE
    ]


def variables_used(tree: ast.Module) -> set[str]:
    """Names of the table's variables a module uses: `environment.NAME` or an import."""
    used = set()
    for node in ast.walk(tree):
        if (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Name)
            and node.value.id == "environment"
        ):
            used.add(node.attr)
        if isinstance(node, ast.ImportFrom) and node.module == "pr2prod.environment":
            used.update(alias.name for alias in node.names)
    return used


def reads_by_name(tree: ast.Module) -> list[int]:
    """Lines that read one variable from os.environ: environ.get(...), environ[...], getenv."""
    lines = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            target = ast.unparse(node.func)
            if target in ("os.environ.get", "environ.get", "os.getenv", "getenv"):
                lines.append(node.lineno)
        if (
            isinstance(node, ast.Subscript)
            and isinstance(node.ctx, ast.Load)
            and ast.unparse(node.value) in ("os.environ", "environ")
        ):
            lines.append(node.lineno)
    return lines


def test_the_table_lists_exactly_the_variables_the_code_uses() -> None:
    used = set().union(*(variables_used(tree) for _, tree in other_modules()))

    assert used == {variable.name for variable in VARIABLES}


def test_each_variable_is_named_in_the_module_as_it_is_in_the_environment() -> None:
    named = {
        name: value for name, value in vars(environment).items() if isinstance(value, Variable)
    }

    assert {name: variable.name for name, variable in named.items()} == {n: n for n in named}
    assert len(VARIABLES) == len(set(VARIABLES)) == len(named)


def test_no_other_module_reads_a_variable_from_the_environment() -> None:
    readers = {
        str(path.relative_to(REPO_ROOT)): lines
        for path, tree in other_modules()
        if (lines := reads_by_name(tree))
    }

    assert readers == {}, "read it through pr2prod.environment (and list it in its table)"


def test_an_unset_or_empty_variable_takes_its_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBE_NAMESPACE", raising=False)
    assert environment.KUBE_NAMESPACE.value() == "pr2prod"
    monkeypatch.setenv("KUBE_NAMESPACE", "")
    assert environment.KUBE_NAMESPACE.value() == "pr2prod"
    monkeypatch.setenv("KUBE_NAMESPACE", "ml")
    assert environment.KUBE_NAMESPACE.value() == "ml"


def test_the_markdown_table_has_a_row_per_variable_with_its_default() -> None:
    lines = environment.markdown_table().splitlines()

    assert lines[:2] == ["| variable | default | what it does |", "|---|---|---|"]
    assert [line.split(" | ")[0] for line in lines[2:]] == [f"| `{v.name}`" for v in VARIABLES]
    assert "| `DEPLOY_TARGET` | `local` |" in lines[2]
    assert "| `KUBE_CONTEXT` | (unset) |" in environment.markdown_table()
