"""The `pr2prod` command: one subcommand per step. dvc.yaml and the Makefile call these.

Subcommands are declared in the modules of pr2prod.commands, one module per part of the
lifecycle; this module only builds the parser from them and turns a Pr2prodError into a
readable message instead of a traceback.
"""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Sequence

from pr2prod.commands import REGISTRY
from pr2prod.errors import Pr2prodError, print_error

# The modules whose @command functions make up the CLI, in the order `--help` lists them.
# Importing one only registers its handlers: each handler imports what it runs when called.
COMMAND_MODULES = (
    "pipeline",
    "stages",
    "report",
    "experiments",
    "comment",
    "serving",
    "deploy",
    "monitor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr2prod", description="Take a model from pull request to production."
    )
    for module in COMMAND_MODULES:
        importlib.import_module(f"pr2prod.commands.{module}")
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for registered in REGISTRY.values():
        registered.add_to(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Pr2prodError as error:
        return print_error(error)
