"""Converting the trained scikit-learn pipeline to ONNX (build time only; never ships).

The graph takes two inputs, a matrix each with one row per record: the numeric features
in the schema's order, float64 (NaN where missing), and the categorical ones, text (the
empty text where missing; the service refuses empty categories, so it can mean nothing
else). Its outputs are the predicted label and every class's probability, in the
estimator's class order (pr2prod.serving.inference.CompiledRunner feeds and reads it).
Numbers stay in double precision up to the estimator, as in scikit-learn.

skl2onnx's own SimpleImputer converter is replaced: its ONNX `Imputer` node runs in single
precision only (ONNX Runtime has no double kernel for it) and it cannot impute categories
whose missing value is NaN, as the pipeline's are. Ours uses plain `IsNaN`/`Where` for
numbers and a one-key `LabelEncoder` for categories, in either precision.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_converter
from skl2onnx.common.data_types import DoubleTensorType, FloatTensorType, StringTensorType
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    RandomForestClassifier,
)
from sklearn.impute import SimpleImputer
from sklearn.tree import DecisionTreeClassifier, ExtraTreeClassifier

from pr2prod.schema import FeatureSchema
from pr2prod.serving.inference import (
    CATEGORIES_INPUT,
    MISSING_CATEGORY,
    NUMBERS_INPUT,
    PROBABILITIES_OUTPUT,
)

# The newest ONNX opsets the converter may use (it takes the oldest each node allows).
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
SPLIT_SIZES_AS_INPUT = 13  # the default domain's first opset whose Split reads sizes as input
# Estimators whose scikit-learn predict rounds its features to float32 first.
_FLOAT32_TREES = (
    DecisionTreeClassifier,
    ExtraTreeClassifier,
    RandomForestClassifier,
    ExtraTreesClassifier,
    GradientBoostingClassifier,
)


def convert_pipeline(model: Any, schema: FeatureSchema) -> ModelProto:
    """The fitted pipeline as an ONNX graph (raises whatever the converter raises)."""
    inputs = [
        (f.name, DoubleTensorType([None, 1]) if f.is_numeric else StringTensorType([None, 1]))
        for f in schema.features
    ]
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    graph = convert_sklearn(
        model,
        initial_types=inputs,
        target_opset=TARGET_OPSET,
        # Probabilities as a plain matrix, not a list of {class: probability} maps.
        options={id(estimator): {"zipmap": False}},
        custom_conversion_functions={
            SimpleImputer: _convert_simple_imputer,
            **{kind: _trees_on_float32(kind) for kind in _FLOAT32_TREES},
        },
        custom_shape_calculators={SimpleImputer: _imputer_shape},
    )
    outputs = [output.name for output in graph.graph.output]
    if PROBABILITIES_OUTPUT not in outputs:
        raise ValueError(f"the graph has no {PROBABILITIES_OUTPUT!r} output, only {outputs}")
    numeric = [f.name for f in schema.features if f.is_numeric]
    categorical = [f.name for f in schema.features if not f.is_numeric]
    _one_input_for(graph, numeric, NUMBERS_INPUT, TensorProto.DOUBLE)
    _one_input_for(graph, categorical, CATEGORIES_INPUT, TensorProto.STRING)
    return graph


def _one_input_for(graph: ModelProto, columns: list[str], name: str, element: int) -> None:
    """Replace the graph's one-column inputs `columns` by one matrix input `name`, split
    into those columns inside the graph.

    One input per feature costs the caller an array per feature and ONNX Runtime a
    binding per array: for one record, about three times the time of running the graph.
    """
    if not columns:
        return
    if name in columns:
        raise ValueError(f"a feature is named {name!r}, the name of the graph's input")
    (default,) = [o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")]
    if default < SPLIT_SIZES_AS_INPUT:
        raise ValueError(f"the graph's opset {default} is older than {SPLIT_SIZES_AS_INPUT}")
    kept = [i for i in graph.graph.input if i.name not in columns]
    del graph.graph.input[:]
    graph.graph.input.extend(
        [*kept, helper.make_tensor_value_info(name, element, [None, len(columns)])]
    )
    sizes = f"{name}_sizes"
    graph.graph.initializer.append(
        helper.make_tensor(sizes, TensorProto.INT64, [len(columns)], [1] * len(columns))
    )
    split = helper.make_node("Split", [name, sizes], columns, name=f"{name}_split", axis=1)
    graph.graph.node.insert(0, split)


def _imputer_shape(operator: Any) -> None:
    rows = operator.inputs[0].get_first_dimension()
    columns = len(operator.raw_operator.statistics_)
    operator.outputs[0].type = operator.inputs[0].type.__class__([rows, columns])


def _convert_simple_imputer(scope: Any, operator: Any, container: Any) -> None:
    imputer: SimpleImputer = operator.raw_operator
    fill = imputer.statistics_ if imputer.fill_value is None else None
    missing_is_nan = isinstance(imputer.missing_values, float) and np.isnan(imputer.missing_values)
    if fill is None or not missing_is_nan or imputer.add_indicator:
        raise NotImplementedError(
            "only a SimpleImputer filling NaN with its learned statistics is converted"
        )
    values = _concatenated(scope, operator, container)
    missing = scope.get_unique_variable_name("missing")
    filler = scope.get_unique_variable_name("fill")
    if isinstance(operator.inputs[0].type, StringTensorType):
        # "" -> 1, anything else -> 0, then as booleans.
        flags = scope.get_unique_variable_name("missing_flags")
        container.add_node(
            "LabelEncoder",
            [values],
            [flags],
            name=scope.get_unique_operator_name("MissingCategory"),
            op_domain="ai.onnx.ml",
            op_version=2,
            keys_strings=[MISSING_CATEGORY],
            values_int64s=[1],
            default_int64=0,
        )
        container.add_node(
            "Cast",
            [flags],
            [missing],
            name=scope.get_unique_operator_name("Cast"),
            to=TensorProto.BOOL,
        )
        container.add_initializer(
            filler,
            TensorProto.STRING,
            [1, len(fill)],
            [str(value).encode() for value in fill],
        )
    else:
        element = (
            TensorProto.DOUBLE
            if isinstance(operator.inputs[0].type, DoubleTensorType)
            else TensorProto.FLOAT
        )
        container.add_node(
            "IsNaN", [values], [missing], name=scope.get_unique_operator_name("IsNaN")
        )
        dtype = np.float64 if element == TensorProto.DOUBLE else np.float32
        container.add_initializer(
            filler, element, [1, len(fill)], np.asarray(fill, dtype=dtype).tolist()
        )
    container.add_node(
        "Where",
        [missing, filler, values],
        [operator.outputs[0].full_name],
        name=scope.get_unique_operator_name("Impute"),
    )


def _concatenated(scope: Any, operator: Any, container: Any) -> str:
    """The operator's inputs side by side (one name when there is one input)."""
    names = [variable.full_name for variable in operator.inputs]
    if len(names) == 1:
        return names[0]
    joined = scope.get_unique_variable_name("columns")
    container.add_node(
        "Concat", names, [joined], name=scope.get_unique_operator_name("Concat"), axis=1
    )
    return joined


class _InSinglePrecision:
    """An operator as its stock converter sees it with float32 in place of float64: its
    features cast before it, its double outputs written to float32 stand-ins."""

    def __init__(self, operator: Any, inputs: list[Any], outputs: list[Any]) -> None:
        self._operator = operator
        self.inputs = inputs
        self.outputs = outputs
        self.input_full_names = [variable.full_name for variable in inputs]
        self.output_full_names = [variable.full_name for variable in outputs]

    def __getattr__(self, name: str) -> Any:
        return getattr(self._operator, name)


class _StandIn:
    """A float32 variable the stock converter reads or writes in place of a double one."""

    def __init__(self, full_name: str, shape: list[Any]) -> None:
        self.full_name = self.onnx_name = self.raw_name = full_name
        self.type = FloatTensorType(shape)

    def get_first_dimension(self) -> Any:
        return self.type.shape[0]


def _cast(scope: Any, container: Any, source: str, target: str, to: int) -> None:
    container.add_node(
        "Cast", [source], [target], name=scope.get_unique_operator_name("Cast"), to=to
    )


def _trees_on_float32(estimator_class: type) -> Callable[[Any, Any, Any], None]:
    """The stock converter of a tree estimator, given its features cast to float32.

    scikit-learn's trees compare `float32(x) <= threshold`: the features are computed in
    double precision and then rounded to single. Casting the graph's double features the
    same way, and letting the stock converter pick float thresholds that split float32
    inputs exactly as scikit-learn does, reproduces every branch; only the sum of the
    trees' leaf probabilities is single precision (about 1e-7).
    """
    stock = get_converter(sklearn_operator_name_map[estimator_class])

    def convert(scope: Any, operator: Any, container: Any) -> None:
        features = operator.inputs[0]
        if not isinstance(features.type, DoubleTensorType):
            stock(scope, operator, container)
            return
        single = _StandIn(scope.get_unique_variable_name("float32_features"), features.type.shape)
        _cast(scope, container, features.full_name, single.full_name, TensorProto.FLOAT)
        outputs, doubled = [], []
        for output in operator.outputs:
            if isinstance(output.type, DoubleTensorType):
                stand_in = _StandIn(
                    scope.get_unique_variable_name("float32_out"), output.type.shape
                )
                outputs.append(stand_in)
                doubled.append((stand_in.full_name, output.full_name))
            else:
                outputs.append(output)
        stock(scope, _InSinglePrecision(operator, [single], outputs), container)
        for source, target in doubled:
            _cast(scope, container, source, target, TensorProto.DOUBLE)

    return convert
