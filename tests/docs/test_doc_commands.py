"""Every command the documentation shows is run by a test, or says why it cannot be."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from command_coverage import ELSEWHERE, NOT_HERE, QUICK, RECIPES, SERVED_ADDRESS
from conftest import copy_project
from doc_pages import REPO_ROOT, Command, commands, find_block
from shell import failure_message, run_documented

COMMANDS = commands()


def recipe_commands(test: str) -> list[Command]:
    return [
        command
        for page, first_command in RECIPES[test]
        for command in find_block(page, first_command).commands
    ]


def claims(command: Command) -> list[str]:
    """Every way of testing that claims `command`: exactly one must."""
    found = []
    if command.text in QUICK:
        found.append("QUICK")
    if SERVED_ADDRESS in command.text:
        found.append("served (test_served_examples.py)")
    found += [f"RECIPES[{test!r}]" for test in RECIPES if command in recipe_commands(test)]
    if command.text in ELSEWHERE:
        found.append(f"ELSEWHERE: {ELSEWHERE[command.text]}")
    if command.text in NOT_HERE:
        found.append(f"NOT_HERE: {NOT_HERE[command.text]}")
    return found


@pytest.mark.parametrize("command", COMMANDS, ids=str)
def test_every_documented_command_is_tested_or_says_why_not(command: Command) -> None:
    found = claims(command)

    assert found, (
        f"{command}\nNo test runs this command: run it in tests/docs, or name the test that "
        "runs it (or why none can) in tests/docs/command_coverage.py."
    )
    assert len(found) == 1, f"{command}\nclaimed more than once: {found}"


def test_the_tables_name_only_commands_the_documentation_shows() -> None:
    shown = {command.text for command in COMMANDS}
    listed = [*QUICK, *ELSEWHERE, *NOT_HERE]

    assert [text for text in listed if text not in shown] == []


def functions_in(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {node.name for node in tree.body if isinstance(node, ast.FunctionDef)}


@pytest.mark.parametrize("test", sorted(set(ELSEWHERE.values())))
def test_each_test_named_elsewhere_exists(test: str) -> None:
    path, name = test.split("::")

    assert (REPO_ROOT / path).is_file(), path
    assert name in functions_in(REPO_ROOT / path), test


@pytest.mark.parametrize("test", RECIPES)
def test_each_recipe_is_a_test_with_its_blocks(test: str) -> None:
    assert test in functions_in(Path(__file__).with_name("test_recipes.py"))
    assert recipe_commands(test)  # find_block fails when a block is gone


@pytest.fixture(scope="module")
def fresh_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return copy_project(tmp_path_factory.mktemp("docs-quick"))


@pytest.mark.integration
@pytest.mark.parametrize("command", QUICK)
def test_a_quick_command_works_as_documented(command: str, fresh_copy: Path) -> None:
    result = run_documented(command, fresh_copy)

    assert result.returncode == 0, failure_message(command, result)
    assert QUICK[command] in result.stdout + result.stderr, failure_message(command, result)
