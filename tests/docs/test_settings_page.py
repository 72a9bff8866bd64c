"""docs/settings.md describes every setting in params.yaml, and no setting that is not there."""

from __future__ import annotations

from typing import Any

import yaml
from doc_pages import DOCS, REPO_ROOT, code_spans, table_rows

PAGE = DOCS / "settings.md"
# Below these, the keys are the user's own: metric names, the estimator's arguments.
FREE_FORM = {"gate": "gate.<metric>", "train.hyperparameters": None}


def settings(node: Any, prefix: str = "") -> set[str]:
    """Dotted names of the settings in a params.yaml mapping."""
    found = set()
    for key, value in node.items():
        name = f"{prefix}{key}"
        if name in FREE_FORM:
            found.add(name)
            if FREE_FORM[name] is not None:  # each entry has the same keys
                for entry in value.values():
                    found |= {f"{FREE_FORM[name]}.{rule}" for rule in entry}
        elif isinstance(value, dict):
            found |= settings(value, f"{name}.")
        else:
            found.add(name)
    return found


def documented() -> set[str]:
    return {code_spans(row[0])[0] for row in table_rows(PAGE.read_text())}


def test_every_setting_in_params_yaml_is_described() -> None:
    in_params = settings(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))

    assert sorted(in_params - documented() - {"gate"}) == []


def test_every_described_setting_is_in_params_yaml() -> None:
    in_params = settings(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))

    assert sorted(documented() - in_params) == []
