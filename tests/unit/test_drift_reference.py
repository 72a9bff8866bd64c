"""The drift reference a model carries, and the service's live counts in its bins."""

from __future__ import annotations

from dataclasses import replace

import joblib
import pandas as pd
import pytest
from conftest import FIXTURES
from prometheus_client import CollectorRegistry, Counter, generate_latest

from pr2prod.data.validation import load_typed
from pr2prod.deploy.observations import parse_samples
from pr2prod.model.split import split_dataset
from pr2prod.model.train import train_model
from pr2prod.monitor.live import live_counts
from pr2prod.release.reference import build_reference, quantile_edges
from pr2prod.schema import load_schema
from pr2prod.serving.reference import (
    MISSING,
    UNSEEN,
    CategoricalReference,
    NumericReference,
    Reference,
)
from pr2prod.serving.telemetry import FeatureStatistics
from pr2prod.settings import DataSettings, load_settings

MIXED = FIXTURES / "mixed"


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Reference, pd.DataFrame]:
    """The mixed fixture (numeric, categorical, missing values) trained, and its reference."""
    workdir = tmp_path_factory.mktemp("mixed")
    settings = replace(load_settings(MIXED / "params.yaml"), data=DataSettings(MIXED / "loans.csv"))
    schema = load_schema(MIXED / "schema.yaml")
    train, test = workdir / "train.csv", workdir / "test.csv"
    split_dataset(settings, schema, train, test)
    train_model(settings, schema, train, workdir / "model.joblib", workdir / "model.json")
    model = joblib.load(workdir / "model.joblib")  # trained just now, by this test
    reference = build_reference(train, test, model, schema)
    return reference, load_typed(train, schema)


def test_the_reference_counts_every_training_row_of_every_feature(mixed) -> None:
    reference, train = mixed
    assert reference.rows == len(train)
    for name, feature in reference.features.items():
        assert sum(feature.bins().values()) == len(train), name
        assert feature.missing == int(train[name].isna().sum()), name


def test_numeric_bins_hold_about_a_tenth_of_the_rows_each(mixed) -> None:
    reference, train = mixed
    debt = reference.features["debt_ratio"]
    assert isinstance(debt, NumericReference)
    assert list(debt.edges) == sorted(debt.edges) and len(debt.counts) == len(debt.edges) + 1
    assert len(debt.counts) == 10
    assert max(debt.counts) - min(debt.counts) <= 0.05 * len(train)
    # A value equal to an edge belongs to the bin below it (Prometheus's `le` rule).
    assert debt.bin_of(debt.edges[0]) == 0 and debt.bin_of(debt.edges[0] + 1e-9) == 1
    assert debt.bin_of(-1e9) == 0 and debt.bin_of(1e9) == len(debt.counts) - 1


def test_repeated_values_make_fewer_bins_not_empty_ones() -> None:
    edges = quantile_edges(pd.Series([1.0] * 50 + [2.0] * 50).to_numpy(), 10)
    assert edges == [1.0, 1.5, 2.0]


def test_categories_and_predictions_are_counted(mixed) -> None:
    reference, train = mixed
    grade = reference.features["grade"]
    assert isinstance(grade, CategoricalReference)
    assert grade.counts == train["grade"].astype(str).value_counts().to_dict()
    predictions = reference.predictions
    assert set(predictions.classes) == {"no", "yes"}
    assert sum(predictions.classes.values()) == predictions.rows
    for counts in predictions.probabilities.values():
        assert (
            len(counts) == len(predictions.probability_bounds) and sum(counts) == predictions.rows
        )


def test_the_reference_survives_its_file(mixed) -> None:
    reference, _ = mixed
    assert Reference.from_json(reference.to_json()) == reference


def test_live_values_are_counted_in_reference_bins_and_read_back(mixed) -> None:
    """What the service exports is what the monitor reads, and no raw value is exported."""
    reference, _ = mixed
    registry = CollectorRegistry()
    counter = Counter(
        "pr2prod_feature_values", "test", ["feature", "bin", "model_version"], registry=registry
    )
    statistics = FeatureStatistics(reference, counter, "v1")
    debt = reference.features["debt_ratio"]
    rows = [
        {
            "age": None,
            "income": 1000.0,
            "debt_ratio": debt.edges[0],
            "employment": "salaried",
            "region": None,
            "grade": "2",
        },
        {
            "age": 40.0,
            "income": float("nan"),
            "debt_ratio": 0.99,
            "employment": "astronaut-x7",
            "region": "north",
            "grade": "2",
        },
    ]
    statistics.observe(rows)
    exposition = generate_latest(registry).decode()
    assert "astronaut-x7" not in exposition

    live = live_counts(parse_samples(exposition))["v1"]
    assert live.features["age"][MISSING] == 1 and live.features["income"][MISSING] == 1
    assert live.features["debt_ratio"]["0"] == 1
    assert live.features["debt_ratio"][str(len(debt.counts) - 1)] == 1
    assert live.features["employment"] == {
        "salaried": 1,
        "self_employed": 0,
        "unemployed": 0,
        "retired": 0,
        UNSEEN: 1,
        MISSING: 0,
    }
    assert live.features["grade"]["2"] == 2
    # Every series exists before traffic, and there are exactly as many as reference bins.
    assert sum(len(bins) for bins in live.features.values()) == sum(
        len(feature.bins()) for feature in reference.features.values()
    )
