"""The canary fault models wrap a regressor: compiled like the genuine model, faulty by design."""

from __future__ import annotations

import pickle
from dataclasses import replace

import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES

from bench import faults
from pr2prod.data.validation import load_typed
from pr2prod.model.split import split_dataset
from pr2prod.model.train import train_model
from pr2prod.schema import load_schema
from pr2prod.settings import DataSettings, load_settings

REGRESSION = FIXTURES / "regression"


@pytest.fixture(scope="module")
def regressor(tmp_path_factory: pytest.TempPathFactory):
    """(fitted pipeline, test features, training split) of the regression fixture."""
    workdir = tmp_path_factory.mktemp("regressor")
    params = load_settings(REGRESSION / "params.yaml")
    params = replace(params, data=DataSettings(REGRESSION / "diabetes.csv"))
    schema = load_schema(REGRESSION / "schema.yaml")
    train, test = workdir / "train.csv", workdir / "test.csv"
    split_dataset(params, schema, train, test)
    train_model(params, schema, train, workdir / "model.joblib", workdir / "model.json")
    features = load_typed(test, schema)[schema.feature_names]
    return joblib.load(workdir / "model.joblib"), features, train


def served_copy(model: faults.ModelWrapper) -> faults.ModelWrapper:
    """The wrapper as a served bento loads it: pickled, then unpickled."""
    return pickle.loads(pickle.dumps(model))


def test_the_target_spread_is_the_training_splits(regressor) -> None:
    _, _, train = regressor
    target = pd.read_csv(train)["progression"]

    spread = faults.TargetSpread.of_split(train, "progression")

    assert spread.mean == pytest.approx(target.mean())
    assert spread.std == pytest.approx(target.std())
    assert 60 < spread.std < 90  # the diabetes data's progression score


def test_an_identical_regressor_answers_the_genuine_values(regressor) -> None:
    model, features, _ = regressor

    values = served_copy(faults.Identical(model, nonce=7)).predict(features)

    assert values.shape == (len(features),)
    assert np.abs(values - model.predict(features)).max() < 1e-9


def test_a_constant_regressor_answers_one_value_for_every_record(regressor) -> None:
    model, features, train = regressor
    spread = faults.TargetSpread.of_split(train, "progression")
    bad = faults.BAD_REGRESSORS["one value for everything"]

    values = served_copy(bad.wrap(model, spread)).predict(features)

    assert values.tolist() == [spread.mean] * len(features)
    assert bad.reason == "diverge"


def test_a_shifted_regressor_answers_the_genuine_values_one_deviation_higher(regressor) -> None:
    model, features, train = regressor
    spread = faults.TargetSpread.of_split(train, "progression")
    bad = faults.BAD_REGRESSORS["values shifted by one standard deviation"]

    values = served_copy(bad.wrap(model, spread)).predict(features)

    assert np.abs(values - (model.predict(features) + spread.std)).max() < 1e-9


def test_a_shift_can_start_under_traffic(regressor) -> None:
    model, features, _ = regressor
    shifted = served_copy(faults.ShiftedValues(model, shift=50.0, after=2))
    genuine = model.predict(features)

    answers = [shifted.predict(features) for _ in range(3)]

    assert np.abs(answers[1] - genuine).max() < 1e-9
    assert np.abs(answers[2] - (genuine + 50.0)).max() < 1e-9


def test_errors_and_latency_faults_wrap_a_regressor_too(regressor) -> None:
    model, features, _ = regressor
    failing = served_copy(faults.FailsAfter(model, after=1))

    assert failing.predict(features).shape == (len(features),)
    with pytest.raises(RuntimeError, match="injected failure"):
        failing.predict(features)
    slow = served_copy(faults.Slow(model, seconds=0.0))
    assert np.abs(slow.predict(features) - model.predict(features)).max() < 1e-9


def test_a_regressor_wrapper_has_no_classes(regressor) -> None:
    model, _, _ = regressor

    wrapper = faults.Identical(model)

    assert not hasattr(wrapper, "classes_")  # the pipeline's runner asks a classifier only
