"""What ships and what is committed must not hold a person's row: golden rows and row ids."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import FIXTURES, REPO_ROOT

from pr2prod.data.records import request_records
from pr2prod.data.validation import load_typed
from pr2prod.errors import Pr2prodError
from pr2prod.model.evaluate import evaluate_model
from pr2prod.model.split import split_dataset
from pr2prod.model.train import train_model
from pr2prod.per_row_files import cached_outputs, check_per_row_files
from pr2prod.release.golden import (
    GOLDEN_ROWS,
    PROFILE_QUANTILES,
    golden_rows,
    synthetic_records,
)
from pr2prod.schema import FeatureSchema, load_schema
from pr2prod.settings import DataSettings, PrivacySettings, load_settings

MIXED = FIXTURES / "mixed"


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, FeatureSchema]:
    """The mixed fixture (numbers, categories, gaps) split and trained in a folder."""
    folder = tmp_path_factory.mktemp("trained")
    schema = load_schema(MIXED / "schema.yaml")
    settings = replace(load_settings(MIXED / "params.yaml"), data=DataSettings(MIXED / "loans.csv"))
    split_dataset(settings, schema, folder / "train.csv", folder / "test.csv")
    train_model(settings, schema, folder / "train.csv", folder / "model.joblib", folder / "m.json")
    return folder, schema


def golden(folder: Path, schema: FeatureSchema, seed: int = 7) -> dict:
    return golden_rows(
        folder / "train.csv", folder / "test.csv", folder / "model.joblib", schema, seed
    )


def as_tuples(records: list[dict]) -> set[tuple]:
    return {tuple(str(value) for value in record.values()) for record in records}


def test_golden_rows_hold_no_row_of_the_data(trained: tuple[Path, FeatureSchema]) -> None:
    folder, schema = trained
    rows = golden(folder, schema)

    data = pd.concat([load_typed(folder / name, schema) for name in ("train.csv", "test.csv")])
    real = as_tuples(request_records(data, schema))
    assert len(rows["records"]) == GOLDEN_ROWS
    assert not as_tuples(rows["records"]) & real
    assert len(as_tuples(rows["records"])) == GOLDEN_ROWS  # no row twice


def test_golden_rows_are_reproducible_and_cover_both_classes(
    trained: tuple[Path, FeatureSchema],
) -> None:
    folder, schema = trained
    rows = golden(folder, schema)

    assert golden(folder, schema) == rows
    predicted = {schema.target.classes[p.index(max(p))] for p in rows["probabilities"]}
    assert predicted == set(schema.target.classes)
    assert all(abs(sum(p) - 1) < 1e-9 for p in rows["probabilities"])


def test_candidates_equal_to_real_rows_are_replaced_by_seeded_mixes(
    trained: tuple[Path, FeatureSchema],
) -> None:
    folder, schema = trained
    train = load_typed(folder / "train.csv", schema)
    every_profile = len(PROFILE_QUANTILES) * len(schema.target.classes)
    profiles = synthetic_records(train, train.head(0), schema, every_profile, seed=1)
    # Pretend every profile row were somebody's record: none of them may come back.
    real = pd.DataFrame(profiles).assign(**{schema.target.name: schema.target.classes[0]})

    mixes = synthetic_records(train, real, schema, GOLDEN_ROWS, seed=1)

    assert len(profiles) == every_profile and len(mixes) == GOLDEN_ROWS
    assert not as_tuples(mixes) & as_tuples(profiles)
    assert mixes == synthetic_records(train, real, schema, GOLDEN_ROWS, seed=1)
    assert mixes != synthetic_records(train, real, schema, GOLDEN_ROWS, seed=2)


def test_row_ids_are_not_derived_from_a_row(trained: tuple[Path, FeatureSchema]) -> None:
    """Knowing a test row's features must not find its id (and so its label)."""
    folder, schema = trained
    test = load_typed(folder / "test.csv", schema)
    ids = evaluate_model(folder / "model.joblib", folder / "test.csv", schema).predictions

    # The attack that worked against content hashes: hash a known row, look it up.
    hashes = pd.util.hash_pandas_object(test[schema.columns], index=False)
    assert not {f"{value:016x}" for value in hashes} & set(ids["row_id"])
    # Changing a feature of every row changes no id: ids are places, not contents.
    numeric = schema.numeric_features[0]
    changed = test.assign(**{numeric: test[numeric].iloc[::-1].to_numpy()})
    changed.to_csv(folder / "changed.csv", index=False)
    again = evaluate_model(folder / "model.joblib", folder / "changed.csv", schema).predictions
    assert again["row_id"].equals(ids["row_id"])
    assert ids["row_id"].is_unique and ids["row_id"].is_monotonic_increasing


def test_per_row_files_must_be_where_params_yaml_says() -> None:
    dvc_yaml = (REPO_ROOT / "dvc.yaml").read_text()
    assert cached_outputs(dvc_yaml)["results/predictions.csv"] is False
    check_per_row_files(PrivacySettings(per_row_files="git"), dvc_yaml)  # the template agrees

    with pytest.raises(Pr2prodError) as refused:
        check_per_row_files(PrivacySettings(per_row_files="dvc"), dvc_yaml)
    assert "cache: true" in refused.value.hint and "git rm --cached" in refused.value.hint

    cached = dvc_yaml.replace(
        "- results/predictions.csv:\n          cache: false",
        "- results/predictions.csv:\n          cache: true",
    )
    assert cached_outputs(cached)["results/predictions.csv"] is True
    check_per_row_files(PrivacySettings(per_row_files="dvc"), cached)
    with pytest.raises(Pr2prodError):
        check_per_row_files(PrivacySettings(per_row_files="git"), cached)
