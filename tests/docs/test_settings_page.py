"""docs/settings.md describes every setting in params.yaml, and no setting that is not there."""

from __future__ import annotations

from typing import Any

import yaml
from doc_pages import DOCS, REPO_ROOT, code_spans, table_rows

PAGE = DOCS / "settings.md"


def settings(node: dict[str, Any], prefix: str = "") -> set[str]:
    """Dotted names of the settings in a params.yaml mapping."""
    found = set()
    for key, value in node.items():
        name = f"{prefix}{key}"
        if name == "gate":  # one rule per metric, each with the same keys
            found |= {f"gate.<metric>.{rule_key}" for rule in value.values() for rule_key in rule}
        # The estimator's own arguments, and the sweep's parameters (named by their path).
        elif name in ("train.hyperparameters", "sweep.params"):
            found.add(name)
        elif isinstance(value, dict):
            found |= settings(value, f"{name}.")
        else:
            found.add(name)
    return found


def documented() -> set[str]:
    return {code_spans(row[0])[0] for row in table_rows(PAGE.read_text())}


def test_every_setting_in_params_yaml_is_described() -> None:
    in_params = settings(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))

    assert sorted(in_params - documented()) == []


def test_every_described_setting_is_in_params_yaml() -> None:
    in_params = settings(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))

    assert sorted(documented() - in_params) == []
