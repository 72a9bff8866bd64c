"""The request model generated from the schema, under each serving policy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import yaml
from conftest import FIXTURES
from pydantic import ValidationError

from pr2prod.schema import load_schema
from pr2prod.serving.contract import field_name, policy_warnings, quoted_name, record_model
from pr2prod.serving.policy import ServingPolicy

MIXED = load_schema(FIXTURES / "mixed" / "schema.yaml")
GOOD = {
    "age": 40.0,
    "income": 52000.0,
    "debt_ratio": 0.3,
    "employment": "salaried",
    "region": None,
    "grade": "2",
}


def errors(model: type, record: dict) -> list[tuple[str, str]]:
    with pytest.raises(ValidationError) as raised:
        model.model_validate(record)
    return [(".".join(map(str, e["loc"])), e["type"]) for e in raised.value.errors()]


def test_a_valid_record_passes_with_nulls_where_allowed() -> None:
    model = record_model(MIXED, ServingPolicy())
    assert model.model_validate(GOOD).model_dump()["region"] is None


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"grade": "4"}, ("grade", "literal_error")),
        ({"region": "arctic"}, ("region", "literal_error")),
        ({"debt_ratio": 1.5}, ("debt_ratio", "less_than_equal")),
        ({"age": math.nan}, ("age", "finite_number")),
        ({"age": "40"}, ("age", "float_type")),
        ({"grade": 2}, ("grade", "literal_error")),
        ({"debt_ratio": None}, ("debt_ratio", "float_type")),
        ({"colour": "red"}, ("colour", "extra_forbidden")),
    ],
)
def test_the_reject_policy_refuses_and_names_the_field(change: dict, expected: tuple) -> None:
    model = record_model(MIXED, ServingPolicy())
    assert expected in errors(model, {**GOOD, **change})


def test_a_nullable_field_must_still_be_sent() -> None:
    model = record_model(MIXED, ServingPolicy())
    assert ("region", "missing") in errors(model, {k: v for k, v in GOOD.items() if k != "region"})


def test_the_warn_policy_accepts_and_reports_what_it_let_through() -> None:
    warn = ServingPolicy(out_of_range="warn", unseen_category="warn")
    model = record_model(MIXED, warn)
    record = model.model_validate({**GOOD, "region": "arctic", "debt_ratio": 1.5}).model_dump()

    problems = policy_warnings(record, MIXED)

    assert problems == [
        "debt_ratio: 1.5 is outside [0.0, 1.0]",
        "region: unseen category 'arctic'",
    ]
    assert ("age", "finite_number") in errors(model, {**GOOD, "age": math.inf})  # never allowed
    # What the service logs names the field and the rule, never the request's value.
    assert policy_warnings(record, MIXED, quote_values=False) == [
        "debt_ratio: outside [0.0, 1.0]",
        "region: unseen category",
    ]


def test_columns_that_are_not_identifiers_keep_their_names_on_the_wire(tmp_path: Path) -> None:
    schema_file = tmp_path / "schema.yaml"
    schema_file.write_text(
        yaml.safe_dump(
            {
                "target": {"name": "y", "classes": ["a", "b"], "positive_class": "a"},
                "features": {"mean radius": {"type": "numeric"}, "class": {"type": "numeric"}},
            }
        )
    )
    model = record_model(load_schema(schema_file), ServingPolicy())

    record = model.model_validate({"mean radius": 1.0, "class": 2.0})

    assert record.model_dump(by_alias=True) == {"mean radius": 1.0, "class": 2.0}
    assert field_name("class") == "f_class" and field_name("1st") == "f_1st"


def test_an_unknown_field_is_named_escaped_and_cut_short() -> None:
    model = record_model(MIXED, ServingPolicy())
    record = {**GOOD, "age": -1.0, "a\nforged line": 1, "k" * 10_000: 2}

    found = errors(model, record)

    assert ("age", "greater_than_equal") in found  # the known fields are still checked
    assert ("a\\nforged line", "extra_forbidden") in found
    assert (f"{'k' * 64}... (10000 characters)", "extra_forbidden") in found


@pytest.mark.parametrize(
    ("name", "quoted"),
    [
        ("colour", "colour"),
        ("tab\there", "tab\\there"),
        ("line\u2028separator", "line\\u2028separator"),
        ("x" * 65, f"{'x' * 64}... (65 characters)"),
    ],
)
def test_quoted_names_print_on_one_short_line(name: str, quoted: str) -> None:
    assert quoted_name(name) == quoted


def test_a_warning_quotes_the_client_category_on_one_short_line() -> None:
    warn = ServingPolicy(unseen_category="warn")
    sent = "north\nforged line" + "x" * 10_000
    record = record_model(MIXED, warn).model_validate({**GOOD, "region": sent}).model_dump()

    (problem,) = policy_warnings(record, MIXED)

    assert "\n" not in problem and len(problem) < 200
    assert problem.startswith("region: unseen category 'north\\nforged line")
