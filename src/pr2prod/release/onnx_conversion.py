"""Converting the trained scikit-learn pipeline to ONNX (build time only; never ships).

The graph takes two inputs, a matrix each with one row per record: the numeric features
in the schema's order, float64 (NaN where missing), and the categorical ones, text (the
empty text where missing; the service refuses empty categories, so it can mean nothing
else). A classifier's outputs are the predicted label and every class's probability, in
the estimator's class order; a regressor's is its predicted value (`values`, one column)
(pr2prod.serving.inference.CompiledRunner feeds and reads them). Numbers stay in double
precision, as in scikit-learn; trees, forests and gradient boosting are converted by
pr2prod.release.onnx_trees, other estimators (linear models among them) by skl2onnx's own
converters.

skl2onnx's own SimpleImputer converter is replaced: its ONNX `Imputer` node runs in single
precision only (ONNX Runtime has no double kernel for it) and it cannot impute categories
whose missing value is NaN, as the pipeline's are. Ours uses plain `IsNaN`/`Where` for
numbers and a one-key `LabelEncoder` for categories, in either precision.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import ModelProto, TensorProto, helper
from skl2onnx import convert_sklearn
from skl2onnx._supported_operators import sklearn_operator_name_map
from skl2onnx.common._registration import get_shape_calculator
from skl2onnx.common.data_types import DoubleTensorType, StringTensorType
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    GradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.tree import (
    DecisionTreeClassifier,
    DecisionTreeRegressor,
    ExtraTreeClassifier,
    ExtraTreeRegressor,
)

from pr2prod.release.onnx_trees import (
    ML_OPSET,
    add_node,
    convert_tree_classifier,
    convert_tree_regressor,
    tree_probabilities_shape,
)
from pr2prod.schema import FeatureSchema
from pr2prod.serving.inference import (
    CATEGORIES_INPUT,
    MISSING_CATEGORY,
    NUMBERS_INPUT,
    PROBABILITIES_OUTPUT,
    VALUES_OUTPUT,
)

# The newest ONNX opsets the converter may use (it takes the oldest each node allows).
# skl2onnx knows ai.onnx.ml up to 3; graphs with TreeEnsemble are raised to its opset after.
TARGET_OPSET = {"": 18, "ai.onnx.ml": 3}
SPLIT_SIZES_AS_INPUT = 13  # the default domain's first opset whose Split reads sizes as input
# Trees and forests, converted in double precision (pr2prod.release.onnx_trees).
_TREE_CLASSIFIERS = (
    DecisionTreeClassifier,
    ExtraTreeClassifier,
    RandomForestClassifier,
    ExtraTreesClassifier,
)
# Their regressors (and gradient boosting), in double precision too: skl2onnx's own emit
# `TreeEnsembleRegressor`, which ONNX Runtime runs in single precision only.
_TREE_REGRESSORS = (
    DecisionTreeRegressor,
    ExtraTreeRegressor,
    RandomForestRegressor,
    ExtraTreesRegressor,
    GradientBoostingRegressor,
)


def convert_pipeline(model: Any, schema: FeatureSchema) -> ModelProto:
    """The fitted pipeline as an ONNX graph (raises whatever the converter raises)."""
    inputs = [
        (f.name, DoubleTensorType([None, 1]) if f.is_numeric else StringTensorType([None, 1]))
        for f in schema.features
    ]
    estimator = model.steps[-1][1] if hasattr(model, "steps") else model
    numeric = schema.target.is_numeric
    graph = convert_sklearn(
        model,
        initial_types=inputs,
        target_opset=TARGET_OPSET,
        # Probabilities as a plain matrix, not a list of {class: probability} maps.
        options=None if numeric else {id(estimator): {"zipmap": False}},
        final_types=[(VALUES_OUTPUT, DoubleTensorType([None, 1]))] if numeric else None,
        custom_conversion_functions={
            SimpleImputer: _convert_simple_imputer,
            **dict.fromkeys(_TREE_CLASSIFIERS, convert_tree_classifier),
            **dict.fromkeys(_TREE_REGRESSORS, convert_tree_regressor),
        },
        custom_shape_calculators={
            SimpleImputer: _imputer_shape,
            **{
                kind: tree_probabilities_shape(
                    get_shape_calculator(sklearn_operator_name_map[kind])
                )
                for kind in _TREE_CLASSIFIERS
            },
        },
    )
    if any(node.op_type == "TreeEnsemble" for node in graph.graph.node):
        for opset in graph.opset_import:
            if opset.domain == "ai.onnx.ml":
                opset.version = ML_OPSET
    outputs = [output.name for output in graph.graph.output]
    answer = VALUES_OUTPUT if numeric else PROBABILITIES_OUTPUT
    if answer not in outputs:
        raise ValueError(f"the graph has no {answer!r} output, only {outputs}")
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
        add_node(
            scope,
            container,
            "LabelEncoder",
            [values],
            [flags],
            op_domain="ai.onnx.ml",
            op_version=2,
            keys_strings=[MISSING_CATEGORY],
            values_int64s=[1],
            default_int64=0,
        )
        add_node(
            scope,
            container,
            "Cast",
            [flags],
            [missing],
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
