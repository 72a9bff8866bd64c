"""The estimator named in params.yaml (train.estimator), built with its hyperparameters."""

from __future__ import annotations

import importlib
from typing import Any

from sklearn.base import BaseEstimator, is_classifier, is_regressor

from pr2prod.errors import Pr2prodError
from pr2prod.settings import TrainSettings


def make_estimator(train: TrainSettings, seed: int, numeric_target: bool = False) -> BaseEstimator:
    """Instantiate e.g. `sklearn.ensemble.RandomForestClassifier` with the given settings:
    a classifier for a categorical target, a regressor for a numeric one.

    The pipeline seed becomes the estimator's `random_state` unless params.yaml sets one,
    so that training is reproducible by default.
    """
    estimator_class = _import(train.estimator)
    try:
        estimator = estimator_class()
        settings: dict[str, Any] = dict(train.hyperparameters)
        if "random_state" in estimator.get_params() and "random_state" not in settings:
            settings["random_state"] = seed
        estimator.set_params(**settings)
    except (TypeError, ValueError) as error:
        raise Pr2prodError(
            f"params.yaml: train.hyperparameters do not fit {train.estimator}: {error}",
            hint="use the parameter names from the estimator's scikit-learn documentation",
        ) from error
    if numeric_target and not is_regressor(estimator):
        raise Pr2prodError(
            f"params.yaml: train.estimator {train.estimator} is not a regressor, and "
            "schema.yaml's target is numeric",
            hint="name a regressor, e.g. sklearn.ensemble.RandomForestRegressor",
        )
    if not numeric_target and not is_classifier(estimator):
        raise Pr2prodError(
            f"params.yaml: train.estimator {train.estimator} is not a classifier, and "
            "schema.yaml's target has classes",
            hint="name a classifier, e.g. sklearn.ensemble.RandomForestClassifier",
        )
    return estimator


def _import(dotted_path: str) -> type[BaseEstimator]:
    module_name, _, class_name = dotted_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError, ValueError) as error:
        raise Pr2prodError(
            f"params.yaml: train.estimator {dotted_path!r} cannot be imported ({error})",
            hint="give the full import path, e.g. sklearn.ensemble.RandomForestClassifier",
        ) from error
