"""Making a model's drift reference from the training split and the test split's predictions.

The format, and how live values fall into its bins, is pr2prod.serving.reference's: the
service counts traffic with the same code that reads this file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pr2prod.data.records import split_records
from pr2prod.data.validation import load_typed
from pr2prod.schema import Feature, FeatureSchema
from pr2prod.serving.feedback import ERROR_SUMS
from pr2prod.serving.inference import PipelineRunner
from pr2prod.serving.reference import (
    CategoricalReference,
    FeatureReference,
    NumericReference,
    PredictionReference,
    PredictionsReference,
    Reference,
    ValueReference,
)
from pr2prod.serving.telemetry import PROBABILITY_BUCKETS

# Ten bins of about a tenth of the training rows each: a shift of a fifth of a standard
# deviation moves several percent of the traffic across bins, while ten bins per feature
# keep the service's series few and each expected count large enough for a chi-square test.
NUMERIC_BINS = 10
SIGNIFICANT_DIGITS = 6  # edges are quantiles, not data cells: no need for every digit
# A regressor's predicted values: buckets at deciles of its test-set predictions. Ten
# buckets of a tenth of the rows each, like a feature's bins: few series per model version,
# each bucket's expected share large enough for a canary window of a few dozen requests.
VALUE_BUCKETS = 10


def build_reference(
    train_file: Path, test_file: Path, model: Any, schema: FeatureSchema
) -> Reference:
    """The reference of the fitted pipeline `model` (loaded as the bundle's model is)."""
    train = load_typed(train_file, schema)
    runner, records = PipelineRunner(model, schema), split_records(test_file, schema)
    predictions: PredictionsReference
    if schema.target.is_numeric:
        actual = load_typed(test_file, schema)[schema.target.name].to_numpy(dtype=float)
        predictions = value_reference(runner.values(records), actual)
    else:
        actual = load_typed(test_file, schema)[schema.target.name].astype(str).to_numpy()
        predictions = prediction_reference(
            runner.probabilities(records),
            list(schema.target.classes),
            actual,
            schema.target.positive_class,
        )
    return Reference(
        rows=len(train),
        features={
            feature.name: feature_reference(train[feature.name], feature)
            for feature in schema.features
        },
        predictions=predictions,
    )


def feature_reference(values: pd.Series, feature: Feature) -> FeatureReference:
    present = values.dropna()
    missing = len(values) - len(present)
    if not feature.is_numeric:
        counts = present.astype(str).value_counts()
        return CategoricalReference(
            counts={name: int(counts.get(name, 0)) for name in feature.categories},
            missing=missing,
        )
    numbers = present.to_numpy(dtype="float64")
    edges = quantile_edges(numbers, NUMERIC_BINS)
    bins = np.searchsorted(edges, numbers, side="left")
    counts = np.bincount(bins, minlength=len(edges) + 1)
    return NumericReference(
        edges=tuple(edges), counts=tuple(int(n) for n in counts), missing=missing
    )


def quantile_edges(numbers: np.ndarray, bins: int) -> list[float]:
    """Inner edges at the training values' quantiles; repeated values make fewer bins."""
    if len(numbers) == 0:
        return []
    inner = np.quantile(numbers, np.linspace(0, 1, bins + 1)[1:-1])
    rounded = {float(f"{edge:.{SIGNIFICANT_DIGITS}g}") for edge in inner}
    return sorted(rounded)


def prediction_reference(
    probabilities: np.ndarray,
    classes: list[str],
    actual: np.ndarray | None = None,
    positive_class: str | None = None,
) -> PredictionReference:
    """`actual`: the test rows' true classes, for the confusion matrix (None: none kept)."""
    predicted = probabilities.argmax(axis=1)
    confusion = {}
    if actual is not None:
        confusion = {
            truth: {
                label: int(((actual == truth) & (predicted == i)).sum())
                for i, label in enumerate(classes)
            }
            for truth in classes
        }
    bounds = np.asarray(PROBABILITY_BUCKETS)
    return PredictionReference(
        rows=len(probabilities),
        classes={label: int((predicted == i).sum()) for i, label in enumerate(classes)},
        probability_bounds=tuple(PROBABILITY_BUCKETS),
        probabilities={
            label: tuple(
                int(n)
                for n in np.bincount(
                    np.searchsorted(bounds, np.clip(probabilities[:, i], 0, 1), side="left"),
                    minlength=len(bounds),
                )
            )
            for i, label in enumerate(classes)
        },
        confusion=confusion,
        positive_class=positive_class,
    )


def value_reference(values: np.ndarray, actual: np.ndarray | None = None) -> ValueReference:
    """A regressor's test-set predictions in buckets bounded by their own deciles, and with
    `actual` (the test rows' true values) their errors' sums.

    Repeated values make fewer buckets (a model predicting one value has two: up to it,
    and above it); there is always at least one bound.
    """
    bounds = quantile_edges(values, VALUE_BUCKETS) or [0.0]
    buckets = np.searchsorted(bounds, values, side="left")
    counts = np.bincount(buckets, minlength=len(bounds) + 1)
    return ValueReference(
        rows=len(values),
        value_bounds=tuple(bounds),
        values=tuple(int(count) for count in counts),
        errors={} if actual is None else test_error_sums(values, actual),
    )


def test_error_sums(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """The test rows' errors as the service sums labelled ones (ERROR_SUMS)."""
    errors = np.abs(np.asarray(predicted, float) - np.asarray(actual, float))
    totals = (len(errors), errors.sum(), (errors**2).sum(), (errors**4).sum())
    return {name: float(total) for name, total in zip(ERROR_SUMS, totals, strict=True)}
