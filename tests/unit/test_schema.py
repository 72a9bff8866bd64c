"""schema.yaml is parsed into the feature schema, and mistakes in it are explained."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from pr2prod.errors import Pr2prodError
from pr2prod.schema import load_schema

MINIMAL = {
    "target": {"name": "label", "classes": ["a", "b"], "positive_class": "a"},
    "features": {
        "size": {"type": "numeric", "min": 0, "max": 10},
        "colour": {"type": "categorical", "categories": ["red", "blue"], "nullable": True},
    },
}


def write(tmp_path: Path, body: dict) -> Path:
    path = tmp_path / "schema.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    return path


def test_the_template_schema_describes_the_sample() -> None:
    schema = load_schema(REPO_ROOT / "schema.yaml")

    assert len(schema.features) == 30
    assert schema.categorical_features == []
    assert schema.target.positive_class == "malignant"
    assert schema.columns[-1] == "diagnosis"


def test_columns_are_split_by_type(tmp_path: Path) -> None:
    schema = load_schema(write(tmp_path, MINIMAL))

    assert schema.numeric_features == ["size"]
    assert schema.categorical_features == ["colour"]
    assert schema.features[1].nullable
    assert not schema.features[0].nullable  # nulls are refused unless allowed
    assert schema.rules.max_duplicate_share == 0.0


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s["features"]["size"].update(type="text"), "type must be"),
        (lambda s: s["features"]["colour"].pop("categories"), "non-empty 'categories'"),
        (lambda s: s["features"]["size"].update(min=11), "greater than max"),
        (lambda s: s["target"].pop("positive_class"), "needs target.positive_class"),
        (lambda s: s["target"].update(positive_class="c"), "not one of the classes"),
        (lambda s: s["features"].update(label={"type": "numeric"}), "also listed as a feature"),
        (lambda s: s["features"]["size"].update(maximum=3), "unknown keys"),
        (lambda s: s.update(rules={"min_row": 3}), "unknown keys"),
        (lambda s: s["target"].update(type="number"), "target.type must be"),
        (lambda s: s["target"].update(type="numeric"), "apply to a categorical target"),
        (lambda s: s["target"].update(min=0), "apply to a numeric target"),
        (lambda s: s["target"].update(unit_of="kg"), "unknown keys"),
        (lambda s: s.update(target={"name": "y", "type": "numeric", "min": 5, "max": 1}), "min"),
    ],
)
def test_mistakes_name_the_place(tmp_path: Path, change, message: str) -> None:
    body = yaml.safe_load(yaml.safe_dump(MINIMAL))
    change(body)

    with pytest.raises(Pr2prodError, match=message) as raised:
        load_schema(write(tmp_path, body))
    assert str(tmp_path / "schema.yaml") in str(raised.value)


def test_a_numeric_target_has_bounds_a_unit_and_no_classes(tmp_path: Path) -> None:
    body = {**MINIMAL, "target": {"name": "price", "type": "numeric", "min": 0, "unit": "EUR"}}
    target = load_schema(write(tmp_path, body)).target

    assert target.is_numeric and target.classes == () and target.positive_class is None
    assert (target.min, target.max, target.unit) == (0.0, None, "EUR")
    assert target.describe() == "price (numeric, in EUR)"
    assert target.as_feature().nullable is False
