"""The runs of a sweep: every combination of the values params.yaml's `sweep:` declares.

Runs are numbered in a fixed order (the first parameter varies slowest), and each run's
experiment name is its number: the same declaration always gives the same runs, with the
same names, so a rerun replaces the earlier experiments and gives the same table. Order
and names are those DVC gives a grid queued in one call (`dvc exp run --queue --name
sweep -S a=1,2 -S b=3,4` queues sweep-1 to sweep-4), which is how the sweep is queued.
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

    def describe(self) -> str:
        return ", ".join(f"{name}={shown(value)}" for name, value in self.overrides)


def expand_grid(sweep: SweepSettings) -> list[Run]:
    """Every combination of the declared values, named sweep-1, sweep-2, ..."""
    values = sweep.values()
    if not values:
        raise Pr2prodError(
            "params.yaml declares no sweep (`sweep.params` is empty)",
            hint="list the parameters to sweep and their values under `sweep: params:` "
            "(docs/experiments.md)",
        )
    combinations = itertools.product(*values.values())
    return [
        Run(f"{NAME_PREFIX}{index}", tuple(zip(values, combination, strict=True)))
        for index, combination in enumerate(combinations, start=1)
    ]


def queue_arguments(runs: list[Run], params: dict[str, Any]) -> list[str]:
    """`dvc exp run --queue` arguments queueing every run of the grid in one call.

    Each parameter is set once with all its values (`-S name=a,b,c`): DVC queues every
    combination, the first parameter varying slowest, and names them `--name`-1, -2, ...,
    as `expand_grid` does. A single run has no values to combine and takes its own name.
    `params` is params.yaml as parsed: DVC's override grammar adds a key params.yaml does
    not have yet only when told to, with a leading `+`.
    """
    arguments = ["--name", runs[0].name if len(runs) == 1 else NAME_PREFIX.rstrip("-")]
    for position, (name, _) in enumerate(runs[0].overrides):
        # Each value once, in the declared order (the runs repeat them, in that order).
        values = dict.fromkeys(override_value(run.overrides[position][1]) for run in runs)
        add = "" if _has_key(params, name) else "+"
        arguments += ["-S", f"{add}{name}={','.join(values)}"]
    return arguments


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
