"""Validation against the feature schema: every fault in the catalogue is caught and named."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO_ROOT
from data_faults import DATA_FAULTS, DataFault

from pr2prod.console import describe_validation
from pr2prod.data.sample import write_sample
from pr2prod.data.validation import load_typed, validate_file
from pr2prod.schema import FeatureSchema, load_schema


@pytest.fixture(scope="module")
def sample_schema() -> FeatureSchema:
    return load_schema(REPO_ROOT / "schema.yaml")


@pytest.fixture(scope="module")
def sample_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    return write_sample(tmp_path_factory.mktemp("sample") / "sample.csv").read_text()


def test_the_sample_passes_every_rule(sample_schema: FeatureSchema, tmp_path: Path) -> None:
    report = validate_file(write_sample(tmp_path / "sample.csv"), sample_schema)
    assert report.valid, report.failures
    assert (report.rows, report.columns) == (569, 31)


@pytest.mark.parametrize("fault", DATA_FAULTS, ids=lambda fault: fault.name)
def test_each_fault_is_caught_with_its_column_and_rule(
    fault: DataFault, sample_schema: FeatureSchema, sample_text: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text(fault.inject(sample_text))

    report = validate_file(broken, sample_schema)

    assert not report.valid
    assert (fault.column, fault.rule) in [(f.column, f.rule) for f in report.failures]
    summary = describe_validation(report)
    assert fault.rule in summary
    assert (fault.column or "(table)") in summary


def test_failures_give_row_counts_examples_and_line_numbers(
    sample_schema: FeatureSchema, sample_text: str, tmp_path: Path
) -> None:
    lines = sample_text.splitlines(keepends=True)
    lines[4] = lines[4].replace("diagnosis", "x").rsplit(",", 1)[0] + ",borderline\n"
    broken = tmp_path / "broken.csv"
    broken.write_text("".join(lines))

    (failure,) = validate_file(broken, sample_schema).failures

    assert failure.column == "diagnosis"
    assert failure.rows == 1
    assert failure.examples == ["borderline"]
    assert failure.lines == [5]  # the fifth line of the file


def test_without_raw_values_no_cell_is_quoted_but_rules_and_lines_stay(
    sample_schema: FeatureSchema, sample_text: str, tmp_path: Path
) -> None:
    lines = sample_text.splitlines(keepends=True)
    secret = "17.99" if "17.99" in lines[1] else lines[1].split(",")[0]
    lines[1] = lines[1].replace(secret, "-" + secret, 1)  # a negative radius: out of range
    lines[3] = lines[3].rsplit(",", 1)[0] + ",borderline\n"
    broken = tmp_path / "broken.csv"
    broken.write_text("".join(lines))

    quoted = validate_file(broken, sample_schema)
    private = quoted.without_values()

    assert "borderline" in quoted.to_json() and f"-{secret}" in quoted.to_json()
    assert "borderline" in describe_validation(quoted)
    for text in (private.to_json(), describe_validation(private)):
        assert "borderline" not in text and f"-{secret}" not in text
    assert [(f.column, f.rule, f.rows, f.lines) for f in private.failures] == [
        (f.column, f.rule, f.rows, f.lines) for f in quoted.failures
    ]


def test_an_uncoercible_value_is_reported_once_not_as_a_cascade(
    sample_schema: FeatureSchema, sample_text: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text(next(f for f in DATA_FAULTS if f.name == "wrong dtype").inject(sample_text))

    rules = [f.rule for f in validate_file(broken, sample_schema).failures]

    assert rules == ["coerce_dtype('float64')"]


def test_the_report_is_machine_readable(
    sample_schema: FeatureSchema, sample_text: str, tmp_path: Path
) -> None:
    broken = tmp_path / "broken.csv"
    broken.write_text(DATA_FAULTS[0].inject(sample_text))

    body = json.loads(validate_file(broken, sample_schema).to_json())

    assert body["valid"] is False
    assert body["failures"][0]["column"] == "mean_radius"


def test_mixed_data_with_missing_values_passes_and_reads_typed() -> None:
    schema = load_schema(FIXTURES / "mixed" / "schema.yaml")
    data = FIXTURES / "mixed" / "loans.csv"

    assert validate_file(data, schema).valid
    frame = load_typed(data, schema)
    assert frame["age"].dtype == "float64"
    assert frame["employment"].isna().any()
    assert set(frame["grade"].dropna()) == {"1", "2", "3"}  # categories stay text


def test_an_unseen_feature_category_is_caught(tmp_path: Path) -> None:
    schema = load_schema(FIXTURES / "mixed" / "schema.yaml")
    text = (FIXTURES / "mixed" / "loans.csv").read_text().replace(",north,", ",arctic,", 1)
    broken = tmp_path / "loans.csv"
    broken.write_text(text)

    failures = validate_file(broken, schema).failures

    assert [(f.column, f.examples) for f in failures] == [("region", ["arctic"])]


def test_a_numeric_target_is_checked_like_a_numeric_feature(tmp_path: Path) -> None:
    schema_path = tmp_path / "schema.yaml"
    schema_path.write_text(
        "target: {name: price, type: numeric, min: 0, max: 100}\n"
        "features:\n  size: {type: numeric}\n  colour: {type: categorical, categories: [a, b]}\n"
    )
    schema = load_schema(schema_path)
    data = tmp_path / "prices.csv"
    data.write_text("size,colour,price\n1,a,10.5\n2,b,\n3,a,250\n4,b,-1\n5,a,99\n")

    failures = validate_file(data, schema).failures

    found = {(f.column, f.rule, f.rows) for f in failures}
    assert ("price", "not_nullable", 1) in found
    assert ("price", "less_than_or_equal_to(100.0)", 1) in found
    assert ("price", "greater_than_or_equal_to(0.0)", 1) in found
    assert not any(f.rule == "all_classes_present" for f in failures)
    good = tmp_path / "good.csv"
    good.write_text("size,colour,price\n1,a,10.5\n2,b,20\n")
    assert validate_file(good, schema).valid
    assert load_typed(good, schema)["price"].dtype == "float64"
