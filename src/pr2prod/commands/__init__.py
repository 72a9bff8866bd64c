"""The `pr2prod` subcommands, each declared once: name, help, arguments and handler together.

A handler module groups the subcommands of one part of the lifecycle (pipeline, report,
serving, deploy) and registers each with `@command`. Handlers import what they run inside
their body, so `pr2prod --help` stays fast and a pipeline stage loads only its own code
(tests/unit/test_stage_dependencies.py holds dvc.yaml to exactly that code).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Handler = Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class Argument:
    """One `add_argument` call: its flags or name, and its keyword options."""

    names: tuple[str, ...]
    options: dict[str, Any] = field(default_factory=dict)


def arg(*names: str, **options: Any) -> Argument:
    return Argument(names, options)


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    handler: Handler
    arguments: tuple[Argument, ...]

    def add_to(self, subcommands: argparse._SubParsersAction) -> None:
        parser = subcommands.add_parser(self.name, help=self.help, description=self.help)
        for argument in self.arguments:
            parser.add_argument(*argument.names, **argument.options)
        parser.set_defaults(handler=self.handler)


REGISTRY: dict[str, Command] = {}


def command(name: str, help: str, *arguments: Argument) -> Callable[[Handler], Handler]:
    """Register the decorated function as the handler of `pr2prod NAME`."""

    def register(handler: Handler) -> Handler:
        if name in REGISTRY:
            raise ValueError(f"two handlers for `pr2prod {name}`")
        REGISTRY[name] = Command(name, help, handler, arguments)
        return handler

    return register
