"""The package's import graph, read from its source: which files importing a module runs.

Used to check that dvc.yaml's stages depend on the code they run, and that the bento ships
every module the service imports (and nothing else).
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

SOURCES = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "pr2prod"


def module_file(module: str) -> Path | None:
    """The source file of one of the package's modules, or None for anything else."""
    if module != PACKAGE and not module.startswith(f"{PACKAGE}."):
        return None
    base = SOURCES.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None  # a name inside a module (`from pr2prod.errors import Pr2prodError`)


def imported_modules(nodes: list[ast.AST], package: str) -> set[str]:
    """Every module named by the import statements in `nodes` (at any depth)."""
    found: set[str] = set()
    for node in (child for top in nodes for child in ast.walk(top)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing package
                parent = package.rsplit(".", node.level - 1)[0]
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            # `from pr2prod import paths` imports the module pr2prod.paths.
            found.update(
                f"{base}.{alias.name}"
                for alias in node.names
                if module_file(f"{base}.{alias.name}") is not None
            )
    return found


def with_parents(module: str) -> set[str]:
    """Importing a.b.c runs a/__init__.py and a/b/__init__.py first."""
    parts = module.split(".")
    return {".".join(parts[:end]) for end in range(1, len(parts) + 1)}


def closure(roots: set[str], walked: dict[str, list[ast.AST]]) -> set[Path]:
    """The package's source files that importing `roots` runs, transitively.

    Imports inside functions count too: a stage's code may import lazily, and a lazy import
    of a module is still code the stage may run. `walked` gives the statements to follow
    for modules of which only a part runs (the module declaring the subcommand).
    """
    seen: set[str] = set()
    pending = {parent for root in roots for parent in with_parents(root)}
    while pending:
        module = pending.pop()
        path = module_file(module)
        if module in seen or path is None:
            continue
        seen.add(module)
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        statements = walked.get(module) or [ast.parse(path.read_text())]
        for name in imported_modules(statements, package):
            pending.update(with_parents(name))
    return {file for file in map(module_file, seen) if file is not None}


def differences(
    needed: set[Path], listed: set[Path], line: Callable[[Path], str]
) -> tuple[str, str]:
    """(what is needed but not listed, what is listed but not needed), a `line` per file."""

    def lines(files: set[Path]) -> str:
        return "\n".join(line(file) for file in sorted(files))

    return lines(needed - listed), lines(listed - needed)
