"""The trained pipeline compiled to ONNX answers every test row as scikit-learn does, or
the service keeps scikit-learn and the model card says why."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pytest
import yaml
from conftest import FIXTURES
from sklearn.datasets import load_iris

from pr2prod.data.records import split_records
from pr2prod.data.sample import write_sample
from pr2prod.model.split import split_dataset
from pr2prod.model.train import train_model
from pr2prod.release.compile import compile_for_serving, describe_inference
from pr2prod.schema import FeatureSchema, load_schema
from pr2prod.serving.inference import ONNXRUNTIME, SCIKIT_LEARN, CompiledRunner, PipelineRunner
from pr2prod.serving.policy import ServingPolicy
from pr2prod.settings import (
    CompileSettings,
    DataSettings,
    SettingError,
    Settings,
    SplitSettings,
    TrainSettings,
    load_settings,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
MIXED = FIXTURES / "mixed"
REGRESSION = FIXTURES / "regression"


def trained(params: Settings, schema_path: Path, workdir: Path):
    """(fitted pipeline, schema, test records) as the pipeline's stages leave them."""
    schema = load_schema(schema_path)
    train, test = workdir / "train.csv", workdir / "test.csv"
    split_dataset(params, schema, train, test)
    train_model(params, schema, train, workdir / "model.joblib", workdir / "model.json")
    return joblib.load(workdir / "model.joblib"), schema, split_records(test, schema)


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory):
    workdir = tmp_path_factory.mktemp("sample")
    params = load_settings(REPO_ROOT / "params.yaml")
    params = replace(params, data=DataSettings(write_sample(workdir / "breast_cancer.csv")))
    return trained(params, REPO_ROOT / "schema.yaml", workdir)


def trained_fixture(folder: Path, data_file: str, workdir: Path, **changes: object):
    """A fixture dataset trained as its params.yaml says, with `changes` to the settings."""
    params = load_settings(folder / "params.yaml")
    params = replace(params, data=DataSettings(folder / data_file), **changes)
    return trained(params, folder / "schema.yaml", workdir)


@pytest.fixture(scope="module")
def mixed(tmp_path_factory: pytest.TempPathFactory):
    return trained_fixture(MIXED, "loans.csv", tmp_path_factory.mktemp("mixed"))


def iris(workdir: Path, estimator: str, hyperparameters: dict):
    data = load_iris(as_frame=True)
    frame = data.frame.rename(columns=lambda name: name.replace(" (cm)", "").replace(" ", "_"))
    frame["species"] = frame.pop("target").map(dict(enumerate(data.target_names)))
    frame.to_csv(workdir / "iris.csv", index=False)
    schema = {
        # The schema's class order differs from the estimator's (alphabetical) one.
        "target": {"name": "species", "classes": ["virginica", "setosa", "versicolor"]},
        "features": {name: {"type": "numeric"} for name in frame.columns[:4]},
    }
    (workdir / "schema.yaml").write_text(yaml.safe_dump(schema))
    params = Settings(
        seed=3,
        data=DataSettings(workdir / "iris.csv"),
        split=SplitSettings(test_size=0.3),
        train=TrainSettings(estimator, hyperparameters),
    )
    return trained(params, workdir / "schema.yaml", workdir)


def assert_compiled_equals_the_pipeline(model, schema: FeatureSchema, records: list[dict]):
    compiled = compile_for_serving(model, schema, records, CompileSettings())

    assert compiled.inference["runtime"] == ONNXRUNTIME, compiled.inference.get("reason")
    parity = compiled.inference["parity"]
    assert parity["rows"] == len(records)
    assert parity["classes_differing"] == 0
    assert parity["max_probability_gap"] <= CompileSettings().tolerance
    # And independently of the parity report: the graph as the service would load it.
    served = CompiledRunner(compiled.graph, compiled.inference["graph_classes"], schema)
    expected = PipelineRunner(model, schema).probabilities(records)
    actual = served.probabilities(records)
    assert (actual.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(actual - expected).max() <= CompileSettings().tolerance
    return compiled


def test_the_sample_model_compiles_equal_on_every_test_row(sample) -> None:
    model, schema, records = sample

    compiled = assert_compiled_equals_the_pipeline(model, schema, records)

    assert len(records) == 114
    assert "compiled to ONNX" in describe_inference(compiled.inference)


def test_categories_and_missing_values_compile_equal_on_every_test_row(mixed) -> None:
    model, schema, records = mixed
    missing = {name for record in records for name, value in record.items() if value is None}
    # Missing numbers and missing categories both reach the graph.
    assert {"age", "income", "employment", "region"} <= missing

    assert_compiled_equals_the_pipeline(model, schema, records)


def test_categories_and_missing_values_in_every_combination_compile_equal(mixed) -> None:
    """Each record with one feature missing, and with every nullable feature missing."""
    model, schema, records = mixed
    nullable = [f.name for f in schema.features if f.nullable]
    variants = [{**records[0], name: None} for name in nullable]
    variants.append({**records[1], **dict.fromkeys(nullable)})

    assert_compiled_equals_the_pipeline(model, schema, records[:5] + variants)


@pytest.mark.parametrize(
    ("estimator", "hyperparameters"),
    [
        ("sklearn.ensemble.RandomForestClassifier", {"n_estimators": 50}),
        ("sklearn.tree.DecisionTreeClassifier", {}),
        ("sklearn.ensemble.ExtraTreesClassifier", {"n_estimators": 30}),
        ("sklearn.linear_model.LogisticRegression", {"max_iter": 500}),
    ],
)
def test_a_multiclass_model_compiles_equal_in_the_schemas_class_order(
    tmp_path: Path, estimator: str, hyperparameters: dict
) -> None:
    model, schema, records = iris(tmp_path, estimator, hyperparameters)

    compiled = assert_compiled_equals_the_pipeline(model, schema, records)

    assert compiled.inference["graph_classes"] == ["setosa", "versicolor", "virginica"]


def test_an_estimator_the_converter_cannot_handle_falls_back_with_the_reason(
    tmp_path: Path,
) -> None:
    model, schema, records = iris(tmp_path, "sklearn.semi_supervised.LabelPropagation", {})

    compiled = compile_for_serving(model, schema, records, CompileSettings())

    assert compiled.graph is None
    assert compiled.inference["runtime"] == SCIKIT_LEARN
    assert compiled.inference["reason"].startswith("the ONNX converter cannot handle")
    assert "LabelPropagation" in compiled.inference["reason"]


def test_the_sample_forest_compiles_to_exactly_scikit_learns_probabilities(sample) -> None:
    model, schema, records = sample

    compiled = compile_for_serving(model, schema, records, CompileSettings())

    assert compiled.inference["parity"]["max_probability_gap"] == 0.0


def test_a_compiled_model_outside_the_tolerance_falls_back_with_the_gap(tmp_path: Path) -> None:
    # Gaussian naive Bayes compiles within 1e-15, not exactly (another order of sums).
    model, schema, records = iris(tmp_path, "sklearn.naive_bayes.GaussianNB", {})
    strict = CompileSettings(tolerance=1e-18)

    compiled = compile_for_serving(model, schema, records, strict)

    assert compiled.graph is None
    assert compiled.inference["runtime"] == SCIKIT_LEARN
    assert f"differs from scikit-learn on {len(records)} rows" in compiled.inference["reason"]
    assert compiled.inference["parity"]["max_probability_gap"] > 1e-18


def test_compilation_can_be_turned_off(sample) -> None:
    model, schema, records = sample

    compiled = compile_for_serving(model, schema, records, CompileSettings(enabled=False))

    assert compiled.graph is None
    assert compiled.inference == {
        "runtime": SCIKIT_LEARN,
        "reason": "compile.enabled is false in params.yaml",
    }


@pytest.mark.parametrize("tolerance", [0.0, -1e-6, 1e-5])
def test_the_tolerance_must_leave_room_for_the_golden_row_checks(tolerance: float) -> None:
    with pytest.raises(SettingError, match="tolerance must be above 0 and at most 5e-06"):
        CompileSettings(tolerance=tolerance)


def diabetes(workdir: Path, estimator: str, hyperparameters: dict):
    """The regression fixture (scikit-learn's diabetes data) trained with `estimator`."""
    train = TrainSettings(estimator, hyperparameters)
    return trained_fixture(REGRESSION, "diabetes.csv", workdir, train=train)


@pytest.fixture(scope="module")
def regression(tmp_path_factory: pytest.TempPathFactory):
    """The regression fixture as its params.yaml trains it (a random forest)."""
    return trained_fixture(REGRESSION, "diabetes.csv", tmp_path_factory.mktemp("regression"))


def assert_compiled_values_equal_the_pipeline(model, schema: FeatureSchema, records: list[dict]):
    policy = ServingPolicy()
    compiled = compile_for_serving(model, schema, records, CompileSettings(), policy)

    assert compiled.inference["runtime"] == ONNXRUNTIME, compiled.inference.get("reason")
    assert compiled.inference["graph_classes"] == []
    parity = compiled.inference["parity"]
    assert parity["rows"] == len(records)
    assert parity["values_differing"] == 0
    # And independently of the parity report: the graph as the service would load it.
    served = CompiledRunner(compiled.graph, [], schema).values(records)
    expected = PipelineRunner(model, schema).values(records)
    assert served.shape == expected.shape == (len(records),)
    assert np.abs(served - expected).max() <= policy.value_rtol * np.abs(expected).max()
    return compiled


def test_the_regression_fixtures_forest_compiles_to_exactly_its_values(regression) -> None:
    model, schema, records = regression

    compiled = assert_compiled_values_equal_the_pipeline(model, schema, records)

    assert len(records) == 111
    assert compiled.inference["parity"]["max_value_gap"] == 0.0
    assert "largest value gap 0" in describe_inference(compiled.inference)


@pytest.mark.parametrize(
    ("estimator", "hyperparameters"),
    [
        ("sklearn.linear_model.LinearRegression", {}),
        ("sklearn.linear_model.Ridge", {"alpha": 0.5}),
        ("sklearn.linear_model.Lasso", {"alpha": 0.1}),
        ("sklearn.tree.DecisionTreeRegressor", {"max_depth": 6}),
        ("sklearn.ensemble.ExtraTreesRegressor", {"n_estimators": 30}),
        ("sklearn.ensemble.GradientBoostingRegressor", {"n_estimators": 50}),
        ("sklearn.ensemble.GradientBoostingRegressor", {"n_estimators": 20, "init": "zero"}),
    ],
)
def test_tree_ensemble_and_linear_regressors_compile_within_the_value_tolerance(
    tmp_path: Path, estimator: str, hyperparameters: dict
) -> None:
    model, schema, records = diabetes(tmp_path, estimator, hyperparameters)

    assert_compiled_values_equal_the_pipeline(model, schema, records)


def test_a_regressor_the_runtime_cannot_run_falls_back_with_the_reason(tmp_path: Path) -> None:
    # skl2onnx converts support vector regression to an operator ONNX Runtime lacks.
    model, schema, records = diabetes(tmp_path, "sklearn.svm.SVR", {})

    compiled = compile_for_serving(model, schema, records, CompileSettings(), ServingPolicy())

    assert compiled.graph is None
    assert compiled.inference["runtime"] == SCIKIT_LEARN
    assert compiled.inference["reason"].startswith("ONNX Runtime cannot run the converted graph")


def test_a_regressor_the_converter_cannot_handle_falls_back_with_the_reason(
    tmp_path: Path,
) -> None:
    model, schema, records = diabetes(
        tmp_path, "sklearn.ensemble.HistGradientBoostingRegressor", {"max_iter": 20}
    )

    compiled = compile_for_serving(model, schema, records, CompileSettings(), ServingPolicy())

    assert compiled.graph is None
    assert compiled.inference["reason"].startswith("the ONNX converter cannot handle")
    assert len(compiled.inference["reason"]) < 400  # the converter's long message, cut


def test_compiled_values_outside_the_tolerance_fall_back_with_the_gap(tmp_path: Path) -> None:
    # Gradient boosting compiles within 1e-12, not exactly (the trees are summed in
    # another order): no tolerance at all refuses it.
    model, schema, records = diabetes(
        tmp_path, "sklearn.ensemble.GradientBoostingRegressor", {"n_estimators": 50}
    )
    exact = ServingPolicy(value_rtol=0.0, value_atol=0.0)

    compiled = compile_for_serving(model, schema, records, CompileSettings(), exact)

    assert compiled.graph is None
    reason = compiled.inference["reason"]
    assert f"differs from scikit-learn on {len(records)} rows" in reason
    assert "values differ by more than the tolerance" in reason
    parity = compiled.inference["parity"]
    assert 0 < parity["max_value_gap"] < 1e-9
    assert parity["values_differing"] > 0
    assert parity["tolerance"] == {"relative": 0.0, "absolute": 0.0}


def test_a_value_tolerance_holds_relative_and_absolute_differences() -> None:
    policy = ServingPolicy(value_rtol=1e-6, value_atol=1e-3)
    expected = np.array([0.0, 1000.0, -5.0])

    def off_by(*gaps: float) -> np.ndarray:
        return expected + np.array(gaps)

    assert policy.values_agree(expected, off_by(1e-3, 0, 0)) == (True, 1e-3)
    assert policy.values_agree(expected, off_by(0, 1.9e-3, 0))[0]  # within 1e-3 + 1e-3
    assert not policy.values_agree(expected, off_by(0, 2.1e-3, 0))[0]
    assert not policy.values_agree(expected, off_by(1.1e-3, 0, 0))[0]
    assert policy.values_agree(expected, expected[:2]) == (False, float("inf"))
