"""How the service runs its model: the compiled ONNX graph, or the scikit-learn pipeline.

`make bento` compiles the trained pipeline to ONNX and stores the graph with the model only
when it answered the whole test set as scikit-learn does (pr2prod.release.compile); the
service then runs it with ONNX Runtime, about a hundred times faster per call. Without a
graph (compilation turned off, the converter could not handle the estimator, or parity
failed) it runs the pipeline as trained. Both answer records (dicts keyed by feature name,
None where missing): a classifier with every class's probability, in the schema's class
order; a regressor (numeric target) with its predicted value.
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import onnxruntime
import pandas as pd

from pr2prod.schema import FeatureSchema

ONNXRUNTIME = "onnxruntime"
SCIKIT_LEARN = "scikit-learn"
# How a missing category reaches the graph: the service refuses empty categories, so it
# can mean nothing else (the graph imputes it as the pipeline does).
MISSING_CATEGORY = ""
PROBABILITIES_OUTPUT = "probabilities"
VALUES_OUTPUT = "values"  # a regressor's graph: one column, the predicted value
# The graph's inputs: every numeric feature, then every categorical one, in schema order.
NUMBERS_INPUT = "numeric_features"
CATEGORIES_INPUT = "categorical_features"


class Runner(Protocol):
    runtime: str

    def probabilities(self, records: list[dict[str, Any]]) -> np.ndarray:
        """One row per record, one column per class in the schema's order."""

    def values(self, records: list[dict[str, Any]]) -> np.ndarray:
        """A regressor's predicted value for each record (float64, one per record)."""


class PipelineRunner:
    """The scikit-learn pipeline as trained: a DataFrame per call, then predict_proba."""

    runtime = SCIKIT_LEARN

    def __init__(self, model: Any, schema: FeatureSchema) -> None:
        self.model = model
        self.columns = schema.feature_names
        self.numeric = set(schema.numeric_features)
        classes = [] if schema.target.is_numeric else [str(label) for label in model.classes_]
        self.order = class_order(classes, schema)

    def probabilities(self, records: list[dict[str, Any]]) -> np.ndarray:
        return self.model.predict_proba(self.frame(records))[:, self.order]

    def values(self, records: list[dict[str, Any]]) -> np.ndarray:
        return np.asarray(self.model.predict(self.frame(records)), dtype=np.float64).ravel()

    def frame(self, records: list[dict[str, Any]]) -> pd.DataFrame:
        """Records as the pipeline expects them, built column by column (6x faster than
        astype)."""
        columns = {}
        for name in self.columns:
            values = [record[name] for record in records]
            if name in self.numeric:
                values = np.array(values, dtype="float64")  # None becomes NaN
            columns[name] = values
        return pd.DataFrame(columns, columns=self.columns)


class CompiledRunner:
    """The compiled graph in ONNX Runtime: one session, one thread (one worker, one core).

    Its inputs are two matrices, a row per record: the numeric features as float64 (NaN
    where missing), the categorical ones as text (MISSING_CATEGORY where missing). Its
    probabilities come in the estimator's class order (`graph_classes`), put in the
    schema's here. A regressor's graph has no classes (`graph_classes` is empty) and
    answers its values instead.
    """

    runtime = ONNXRUNTIME

    def __init__(self, graph: bytes, graph_classes: list[str], schema: FeatureSchema) -> None:
        options = onnxruntime.SessionOptions()
        # Parallelism comes from workers and batching; threads inside one call only
        # contend for the same cores (and cost more than a tree walk of one row).
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.execution_mode = onnxruntime.ExecutionMode.ORT_SEQUENTIAL
        self.session = onnxruntime.InferenceSession(
            graph, options, providers=["CPUExecutionProvider"]
        )
        self.numeric = [f.name for f in schema.features if f.is_numeric]
        self.categorical = [f.name for f in schema.features if not f.is_numeric]
        self.order = class_order(graph_classes, schema)

    def probabilities(self, records: list[dict[str, Any]]) -> np.ndarray:
        (probabilities,) = self.session.run([PROBABILITIES_OUTPUT], self.feeds(records))
        return probabilities[:, self.order]

    def values(self, records: list[dict[str, Any]]) -> np.ndarray:
        (values,) = self.session.run([VALUES_OUTPUT], self.feeds(records))
        return values.astype(np.float64, copy=False).ravel()

    def feeds(self, records: list[dict[str, Any]]) -> dict[str, np.ndarray]:
        feeds = {}
        if self.numeric:  # None becomes NaN
            numbers = [[record[name] for name in self.numeric] for record in records]
            feeds[NUMBERS_INPUT] = np.array(numbers, dtype=np.float64)
        if self.categorical:
            feeds[CATEGORIES_INPUT] = np.array(
                [[_category(record[name]) for name in self.categorical] for record in records],
                dtype=object,
            )
        return feeds


def _category(value: str | None) -> str:
    return MISSING_CATEGORY if value is None else value


def class_order(model_classes: list[str], schema: FeatureSchema) -> list[int]:
    """Where each of the schema's classes is among the model's outputs."""
    return [model_classes.index(label) for label in schema.target.classes]
