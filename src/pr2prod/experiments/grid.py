"""The runs of a sweep: every combination of the values params.yaml's `sweep:` declares.

Runs are numbered in a fixed order (the first parameter varies slowest), and each run's
experiment name is its number: the same declaration always gives the same runs, with the
same names, so a rerun replaces the earlier experiments and gives the same table.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pr2prod.errors import Pr2prodError
from pr2prod.settings import HINT, SweepSettings, parse_settings

NAME_PREFIX = "sweep-"


@dataclass(frozen=True)
class Run:
    """One experiment of the sweep: its name and the parameter values it sets."""

    name: str
    overrides: tuple[tuple[str, Any], ...]  # (dotted parameter name, value), in declared order

    def set_arguments(self, params: dict[str, Any]) -> list[str]:
        """`dvc exp run` arguments setting this run's parameters (`-S name=value` each).

        `params` is params.yaml as parsed: DVC's override grammar adds a key params.yaml
        does not have yet only when told to, with a leading `+`.
        """
        arguments: list[str] = []
        for name, value in self.overrides:
            add = "" if _has_key(params, name) else "+"
            arguments += ["-S", f"{add}{name}={override_value(value)}"]
        return arguments

    def describe(self) -> str:
        return ", ".join(f"{name}={shown(value)}" for name, value in self.overrides)


def expand_grid(sweep: SweepSettings) -> list[Run]:
    """Every combination of the declared values, named sweep-01, sweep-02, ..."""
    values = sweep.values()
    if not values:
        raise Pr2prodError(
            "params.yaml declares no sweep (`sweep.params` is empty)",
            hint="list the parameters to sweep and their values under `sweep: params:` "
            "(docs/experiments.md)",
        )
    combinations = list(itertools.product(*values.values()))
    width = max(2, len(str(len(combinations))))
    return [
        Run(f"{NAME_PREFIX}{index:0{width}d}", tuple(zip(values, combination, strict=True)))
        for index, combination in enumerate(combinations, start=1)
    ]


def check_runs_settings(runs: list[Run], params_text: str) -> None:
    """Refuse a sweep whose runs would write an invalid params.yaml, before any run starts."""
    for run in runs:
        raw = yaml.safe_load(params_text) or {}
        for dotted, value in run.overrides:
            *sections, leaf = dotted.split(".")
            node = raw
            for section in sections:
                child = node.get(section)
                node[section] = child = dict(child) if isinstance(child, dict) else {}
                node = child
            node[leaf] = value
        try:
            parse_settings(yaml.safe_dump(raw), where=f"params.yaml as {run.name} sets it")
        except Pr2prodError as error:
            raise Pr2prodError(f"{error} ({run.describe()})", hint=HINT) from None


def _has_key(params: dict[str, Any], dotted: str) -> bool:
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def override_value(value: Any) -> str:
    """A value as DVC's `-S` reads it back: null, true/false, numbers, quoted text."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    # JSON's double-quoted string is a quoted string to DVC's override grammar too.
    return json.dumps(str(value))


def shown(value: Any) -> str:
    """A value as params.yaml would show it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def sweep_runs(params_path: Path) -> list[Run]:
    """The runs the sweep in `params_path` declares, each checked to make valid settings."""
    from pr2prod.settings import load_settings

    runs = expand_grid(load_settings(params_path).sweep)
    check_runs_settings(runs, params_path.read_text())
    return runs
