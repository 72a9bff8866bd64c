"""docs/github-setup.md lists exactly the secrets, variables, environments and permissions
that the workflows use, and which workflows use each."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from doc_pages import DOCS, REPO_ROOT, code_spans, section, table_rows

PAGE = DOCS / "github-setup.md"
WORKFLOWS = sorted((REPO_ROOT / ".github" / "workflows").glob("*.yml"))
CONTEXT = re.compile(r"\b(secrets|vars)\.([A-Za-z_][A-Za-z0-9_]*)")


def strings(node: Any) -> Iterator[str]:
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for value in node.values():
            yield from strings(value)
    elif isinstance(node, list):
        for item in node:
            yield from strings(item)


def workflow(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text())


def used(kind: str) -> dict[str, set[str]]:
    """Name -> the workflow files using it, for `secrets`, `vars` or `environment`."""
    found: dict[str, set[str]] = {}
    for path in WORKFLOWS:
        if kind == "environment":
            names = set()
            for job in workflow(path)["jobs"].values():
                environment = job.get("environment")
                if environment is not None:
                    names.add(environment if isinstance(environment, str) else environment["name"])
        else:
            names = {
                match[2]
                for text in strings(workflow(path))
                for match in CONTEXT.finditer(text)
                if match[1] == kind
            }
        for name in names:
            found.setdefault(name, set()).add(path.name)
    return found


def listed(heading: str) -> dict[str, set[str]]:
    """Name (first column) -> the workflow files named in the row."""
    rows = table_rows(section(PAGE, heading))
    return {
        code_spans(row[0])[0]: {span for span in code_spans(row[1]) if span.endswith(".yml")}
        for row in rows
    }


@pytest.mark.parametrize(
    "kind, heading",
    [("secrets", "Secrets"), ("vars", "Variables"), ("environment", "Environments")],
)
def test_the_page_lists_exactly_what_the_workflows_use(kind: str, heading: str) -> None:
    assert listed(heading) == used(kind)


def effective_permissions() -> dict[tuple[str, str], dict[str, str]]:
    """(workflow file, job) -> the permissions its token has."""
    found = {}
    for path in WORKFLOWS:
        definition = workflow(path)
        for name, job in definition["jobs"].items():
            permissions = job.get("permissions", definition.get("permissions"))
            # Undeclared, a job would get the repository's default, which the page cannot know.
            assert permissions is not None, f"{path.name}: job {name} declares no permissions"
            found[(path.name, name)] = dict(permissions)
    return found


def test_the_permissions_table_matches_every_job() -> None:
    documented = {}
    for row in table_rows(section(PAGE, "Permissions")):
        spans = [span.split(":") for span in code_spans(row[2])]
        permissions = {scope.strip(): level.strip() for scope, level in spans}
        documented[(code_spans(row[0])[0], code_spans(row[1])[0])] = permissions

    assert documented == effective_permissions()
