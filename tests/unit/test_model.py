"""Training and evaluation from schema + params alone: numeric, categorical, missing, multiclass."""

from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import FIXTURES
from sklearn.datasets import load_iris

from pr2prod.errors import Pr2prodError
from pr2prod.model.estimator import make_estimator
from pr2prod.model.evaluate import evaluate_model, write_evaluation
from pr2prod.model.split import split_dataset
from pr2prod.model.train import train_model
from pr2prod.schema import load_schema
from pr2prod.settings import (
    DataSettings,
    Settings,
    SplitSettings,
    TrainSettings,
    load_settings,
)

MIXED = FIXTURES / "mixed"


def run_pipeline(params: Settings, schema_path: Path, workdir: Path) -> dict:
    """prepare -> train -> evaluate in `workdir`, as the DVC stages would; returns the metrics."""
    schema = load_schema(schema_path)
    train, test = workdir / "train.csv", workdir / "test.csv"
    split_dataset(params, schema, train, test)
    train_model(params, schema, train, workdir / "model.joblib", workdir / "model.json")
    evaluation = evaluate_model(workdir / "model.joblib", test, schema)
    write_evaluation(
        evaluation, workdir / "metrics.json", workdir / "predictions.csv", workdir / "plots"
    )
    return evaluation.metrics


@pytest.fixture
def mixed_params() -> Settings:
    params = load_settings(MIXED / "params.yaml")
    return replace(params, data=DataSettings(MIXED / "loans.csv"))


def test_mixed_types_with_missing_values_train_and_evaluate(
    mixed_params: Settings, tmp_path: Path
) -> None:
    metrics = run_pipeline(mixed_params, MIXED / "schema.yaml", tmp_path)

    assert metrics["test_rows"] == 100
    assert 0.6 < metrics["roc_auc"] <= 1.0  # the fixture has real signal to learn
    card = json.loads((tmp_path / "model.json").read_text())
    assert card["features"] == ["age", "income", "debt_ratio", "employment", "region", "grade"]
    predictions = pd.read_csv(tmp_path / "predictions.csv")
    assert list(predictions.columns) == ["row_id", "actual", "predicted", "proba_no", "proba_yes"]
    assert np.allclose(predictions[["proba_no", "proba_yes"]].sum(axis=1), 1.0, atol=1e-5)


def test_the_model_predicts_rows_with_gaps_and_unseen_categories(
    mixed_params: Settings, tmp_path: Path
) -> None:
    run_pipeline(mixed_params, MIXED / "schema.yaml", tmp_path)
    model = joblib.load(tmp_path / "model.joblib")
    rows = pd.DataFrame(
        {
            "age": [np.nan, 40.0],
            "income": [np.nan, 52000.0],
            "debt_ratio": [0.9, 0.1],
            "employment": [np.nan, "astronaut"],
            "region": ["north", np.nan],
            "grade": ["3", "1"],
        }
    )

    probabilities = model.predict_proba(rows)

    assert probabilities.shape == (2, 2)
    assert not np.isnan(probabilities).any()


def test_the_split_is_stratified_and_repeatable(mixed_params: Settings, tmp_path: Path) -> None:
    schema = load_schema(MIXED / "schema.yaml")
    first = split_dataset(mixed_params, schema, tmp_path / "a.csv", tmp_path / "b.csv")
    second = split_dataset(mixed_params, schema, tmp_path / "c.csv", tmp_path / "d.csv")

    assert first == second == (300, 100)
    assert (tmp_path / "b.csv").read_bytes() == (tmp_path / "d.csv").read_bytes()
    everything = pd.read_csv(MIXED / "loans.csv")["defaulted"].value_counts(normalize=True)
    test_share = pd.read_csv(tmp_path / "b.csv")["defaulted"].value_counts(normalize=True)
    assert (everything - test_share).abs().max() < 0.02


def test_multiclass_metrics_are_macro_averaged(tmp_path: Path) -> None:
    iris = load_iris(as_frame=True)
    frame = iris.frame.rename(columns=lambda name: name.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = frame.pop("target").map(dict(enumerate(iris.target_names)))
    frame.to_csv(tmp_path / "iris.csv", index=False)
    schema_path = tmp_path / "schema.yaml"
    schema_path.write_text(
        yaml.safe_dump(
            {
                "target": {"name": "species", "classes": [str(name) for name in iris.target_names]},
                "features": {name: {"type": "numeric"} for name in frame.columns[:4]},
            }
        )
    )
    params = Settings(
        seed=1,
        data=DataSettings(tmp_path / "iris.csv"),
        split=SplitSettings(test_size=0.3),
        train=TrainSettings("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
    )

    metrics = run_pipeline(params, schema_path, tmp_path)

    per_class = metrics["per_class"]
    assert set(per_class) == {"setosa", "versicolor", "virginica"}
    macro_recall = np.mean([row["recall"] for row in per_class.values()])
    assert metrics["recall"] == pytest.approx(macro_recall, abs=1e-6)
    roc = pd.read_csv(tmp_path / "plots" / "roc.csv")
    assert roc["fpr"].is_monotonic_increasing and roc["tpr"].iloc[-1] == 1.0


def test_the_seed_becomes_the_random_state_unless_set() -> None:
    forest = "sklearn.ensemble.RandomForestClassifier"
    assert make_estimator(TrainSettings(forest, {}), seed=5).random_state == 5
    assert make_estimator(TrainSettings(forest, {"random_state": 9}), seed=5).random_state == 9


@pytest.mark.parametrize(
    ("estimator", "hyperparameters", "message"),
    [
        ("sklearn.ensemble.RandomForrest", {}, "cannot be imported"),
        ("RandomForestClassifier", {}, "cannot be imported"),
        ("sklearn.ensemble.RandomForestClassifier", {"trees": 3}, "do not fit"),
        ("sklearn.linear_model.LinearRegression", {}, "not a classifier"),
    ],
)
def test_estimator_mistakes_are_explained(estimator: str, hyperparameters: dict, message: str):
    with pytest.raises(Pr2prodError, match=message):
        make_estimator(TrainSettings(estimator, hyperparameters), seed=0)


REGRESSION = FIXTURES / "regression"


@pytest.fixture
def diabetes(tmp_path: Path) -> tuple[Settings, Path]:
    """The regression fixture (scikit-learn's diabetes data), its schema in `tmp_path`."""
    shutil.copy(REGRESSION / "schema.yaml", tmp_path / "schema.yaml")
    params = Settings(
        seed=3,
        data=DataSettings(REGRESSION / "diabetes.csv"),
        split=SplitSettings(test_size=0.25),
        train=TrainSettings(
            "sklearn.ensemble.RandomForestRegressor", {"n_estimators": 50, "min_samples_leaf": 5}
        ),
    )
    return params, tmp_path / "schema.yaml"


def test_a_numeric_target_trains_any_regressor_and_reports_errors(
    diabetes: tuple[Settings, Path], tmp_path: Path
) -> None:
    params, schema_path = diabetes
    workdir = tmp_path / "run"
    workdir.mkdir()

    metrics = run_pipeline(params, schema_path, workdir)

    assert set(metrics) == {"rmse", "mae", "median_absolute_error", "r2", "mape", "test_rows"}
    assert metrics["test_rows"] == 111 and 0.2 < metrics["r2"] < 0.8  # real, modest signal
    predictions = pd.read_csv(workdir / "predictions.csv")
    assert list(predictions.columns) == ["row_id", "actual", "predicted", "residual"]
    residual = predictions["actual"] - predictions["predicted"]
    assert np.allclose(predictions["residual"], residual, atol=1e-5)
    assert sorted(path.name for path in (workdir / "plots").iterdir()) == ["residuals.csv"]
    card = json.loads((workdir / "model.json").read_text())
    assert card["classes"] == [] and card["hyperparameters"]["random_state"] == 3


def test_a_numeric_split_covers_the_whole_range_on_both_sides(
    diabetes: tuple[Settings, Path], tmp_path: Path
) -> None:
    params, schema_path = diabetes
    schema = load_schema(schema_path)
    train, test = tmp_path / "train.csv", tmp_path / "test.csv"
    split_dataset(params, schema, train, test)
    edges = pd.qcut(pd.read_csv(params.data.file)["progression"], 10, retbins=True)[1]
    test_rows = pd.read_csv(test)
    assert len(test_rows) == 111
    # Every decile of the target is in the test split, in proportion (11.1 rows each, +-1).
    per_decile = pd.cut(test_rows["progression"], bins=edges, include_lowest=True).value_counts()
    assert per_decile.min() >= 10 and per_decile.max() <= 12, per_decile


def test_a_numeric_target_needs_a_regressor_and_a_class_target_a_classifier() -> None:
    forest = "sklearn.ensemble.RandomForestClassifier"
    with pytest.raises(Pr2prodError, match="not a regressor"):
        make_estimator(TrainSettings(forest, {}), seed=0, numeric_target=True)
    regressor = make_estimator(TrainSettings("sklearn.linear_model.Ridge", {}), 0, True)
    assert regressor.__class__.__name__ == "Ridge"
