"""Which params changed between the base and the PR (params.yaml, flattened)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml


@dataclass(frozen=True)
class ParamChange:
    name: str
    base: Any
    head: Any


_ABSENT = "(absent)"


def diff_params(base_text: str | None, head_text: str) -> list[ParamChange]:
    base = _flatten(yaml.safe_load(base_text or "") or {})
    head = _flatten(yaml.safe_load(head_text) or {})
    return [
        ParamChange(name, base.get(name, _ABSENT), head.get(name, _ABSENT))
        for name in sorted(base.keys() | head.keys())
        if base.get(name, _ABSENT) != head.get(name, _ABSENT)
    ]


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
