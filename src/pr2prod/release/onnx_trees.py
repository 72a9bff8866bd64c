"""Decision trees and forests as one ONNX `TreeEnsemble` node in double precision.

skl2onnx's tree converters emit `TreeEnsembleClassifier`, whose probabilities are single
precision: summed over 200 trees they drift from scikit-learn's by up to 1e-6, enough to
change the sixth decimal the service answers. `TreeEnsemble` (ai.onnx.ml 5) computes in
the input's type. The branches are scikit-learn's own: it compares each feature rounded to
float32 with a double threshold, so the graph rounds the features the same way
(double -> float -> double) and keeps the thresholds as they are. A tree's class
probabilities are its leaf's class fractions; the forest's are their mean, summed in double
and divided by the number of trees, as scikit-learn does. `TreeEnsemble` gives each leaf
one target, so each tree appears once per class.

Regressors take the same path with one target: a forest's value is the mean of its trees'
leaf values; gradient boosting's is its initial constant plus the learning rate times the
sum of its trees' leaf values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from onnx import TensorProto, numpy_helper
from skl2onnx.common.data_types import DoubleTensorType

ML_OPSET = 5  # the first ai.onnx.ml opset with TreeEnsemble
BRANCH_LEQ = 0  # TreeEnsemble's node mode for `x <= split`
SUM = 1  # TreeEnsemble's aggregate function


def add_node(
    scope: Any, container: Any, op_type: str, inputs: list[str], outputs: list[str], **attributes
) -> None:
    """A node named uniquely after its type."""
    name = scope.get_unique_operator_name(op_type)
    container.add_node(op_type, inputs, outputs, name=name, **attributes)


def tree_probabilities_shape(stock_calculator: Any) -> Any:
    """The stock shape calculator, with the probabilities declared double."""

    def calculate(operator: Any) -> None:
        stock_calculator(operator)
        probabilities = operator.outputs[1]
        probabilities.type = DoubleTensorType(probabilities.type.shape)

    return calculate


def convert_tree_classifier(scope: Any, operator: Any, container: Any) -> None:
    """A fitted DecisionTreeClassifier or forest of them: label and probabilities."""
    model = operator.raw_operator
    trees = [tree.tree_ for tree in getattr(model, "estimators_", [model])]
    leaf_values = [_class_fractions(tree) for tree in trees]
    sums = _tree_sums(scope, container, operator.inputs[0].full_name, trees, leaf_values)
    probabilities = operator.outputs[1].full_name
    _arithmetic(scope, container, "Div", sums, float(len(trees)), probabilities)
    _label(scope, container, model.classes_, probabilities, operator.outputs[0].full_name)


def convert_tree_regressor(scope: Any, operator: Any, container: Any) -> None:
    """A fitted DecisionTreeRegressor, a forest of them, or gradient boosting: the value."""
    model = operator.raw_operator
    value = operator.outputs[0].full_name
    if hasattr(model, "learning_rate"):  # gradient boosting: init + rate x sum of trees
        trees = [tree.tree_ for tree in model.estimators_[:, 0]]
        leaf_values = [tree.value[:, 0, :1] * model.learning_rate for tree in trees]
        sums = _tree_sums(scope, container, operator.inputs[0].full_name, trees, leaf_values)
        _arithmetic(scope, container, "Add", sums, _boosting_start(model), value)
        return
    trees = [tree.tree_ for tree in getattr(model, "estimators_", [model])]
    leaf_values = [tree.value[:, 0, :1] for tree in trees]
    sums = _tree_sums(scope, container, operator.inputs[0].full_name, trees, leaf_values)
    _arithmetic(scope, container, "Div", sums, float(len(trees)), value)


def _boosting_start(model: Any) -> float:
    """Gradient boosting's prediction before its first tree: a constant, or the model is
    not converted (an estimator as `init` predicts per row)."""
    if isinstance(model.init_, str) and model.init_ == "zero":
        return 0.0
    constant = getattr(model.init_, "constant_", None)
    if constant is None:
        raise NotImplementedError("gradient boosting with an estimator as `init` is not converted")
    return float(np.asarray(constant).ravel()[0])


def _class_fractions(tree: Any) -> np.ndarray:
    """Each node's class fractions (nodes x classes)."""
    return tree.value[:, 0, :] / tree.value[:, 0, :].sum(axis=1, keepdims=True)


def _tree_sums(
    scope: Any, container: Any, features: str, trees: list[Any], leaf_values: list[np.ndarray]
) -> str:
    """One TreeEnsemble node summing, per target, the trees' leaf values (nodes x targets
    each) for the features rounded as scikit-learn rounds them; the sums' variable."""
    targets = leaf_values[0].shape[1]
    rounded = _cast(scope, container, features, TensorProto.FLOAT)
    as_double = _cast(scope, container, rounded, TensorProto.DOUBLE)
    sums = scope.get_unique_variable_name("tree_sums")
    add_node(
        scope,
        container,
        "TreeEnsemble",
        [as_double],
        [sums],
        op_domain="ai.onnx.ml",
        op_version=3,  # as far as skl2onnx knows; pr2prod.release.onnx_conversion raises it
        n_targets=targets,
        aggregate_function=SUM,
        post_transform=0,
        **_ensemble_attributes(trees, leaf_values),
    )
    return sums


def _arithmetic(
    scope: Any, container: Any, op_type: str, variable: str, constant: float, output: str
) -> None:
    """`output = variable <op> constant` (Div, Add...) in double precision."""
    name = scope.get_unique_variable_name("constant")
    container.add_initializer(name, TensorProto.DOUBLE, [], [constant])
    container.add_node(
        op_type, [variable, name], [output], name=scope.get_unique_operator_name(op_type)
    )


def _ensemble_attributes(trees: list[Any], leaf_values: list[np.ndarray]) -> dict[str, Any]:
    nodes: dict[str, list] = {
        key: []
        for key in (
            "featureids",
            "splits",
            "truenodeids",
            "trueleafs",
            "falsenodeids",
            "falseleafs",
        )
    }
    roots: list[int] = []
    leaf_targets: list[int] = []
    leaf_weights: list[float] = []
    for tree, values in zip(trees, leaf_values, strict=True):
        left, right = tree.children_left, tree.children_right
        is_leaf = left == -1
        for target in range(values.shape[1]):
            branch_base, leaf_base = len(nodes["featureids"]), len(leaf_targets)
            branch_index = np.cumsum(~is_leaf) - 1 + branch_base
            leaf_index = np.cumsum(is_leaf) - 1 + leaf_base
            leaves = np.flatnonzero(is_leaf)
            leaf_targets += [target] * len(leaves)
            leaf_weights += values[leaves, target].tolist()
            branches = np.flatnonzero(~is_leaf)
            if not len(branches):  # a tree that is one leaf: a branch both ways to it
                roots.append(branch_base)
                _append_branch(nodes, 0, np.inf, (leaf_base, 1), (leaf_base, 1))
                continue
            roots.append(int(branch_index[0]))
            for node in branches:
                sides = []
                for child in (left[node], right[node]):
                    if is_leaf[child]:
                        sides.append((int(leaf_index[child]), 1))
                    else:
                        sides.append((int(branch_index[child]), 0))
                _append_branch(nodes, int(tree.feature[node]), float(tree.threshold[node]), *sides)
    return {
        "tree_roots": roots,
        "nodes_featureids": nodes["featureids"],
        "nodes_modes": numpy_helper.from_array(
            np.full(len(nodes["featureids"]), BRANCH_LEQ, dtype=np.uint8), "modes"
        ),
        "nodes_splits": numpy_helper.from_array(np.array(nodes["splits"]), "splits"),
        "nodes_truenodeids": nodes["truenodeids"],
        "nodes_trueleafs": nodes["trueleafs"],
        "nodes_falsenodeids": nodes["falsenodeids"],
        "nodes_falseleafs": nodes["falseleafs"],
        "leaf_targetids": leaf_targets,
        "leaf_weights": numpy_helper.from_array(np.array(leaf_weights), "weights"),
    }


def _append_branch(
    nodes: dict[str, list],
    feature: int,
    split: float,
    true_side: tuple[int, int],
    false_side: tuple[int, int],
) -> None:
    """One `x[feature] <= split` node; each side is (index, 1 if it is a leaf else 0)."""
    nodes["featureids"].append(feature)
    nodes["splits"].append(split)
    nodes["truenodeids"].append(true_side[0])
    nodes["trueleafs"].append(true_side[1])
    nodes["falsenodeids"].append(false_side[0])
    nodes["falseleafs"].append(false_side[1])


def _cast(scope: Any, container: Any, source: str, to: int) -> str:
    target = scope.get_unique_variable_name("cast")
    add_node(scope, container, "Cast", [source], [target], to=to)
    return target


def _label(scope: Any, container: Any, labels: Any, probabilities: str, output: str) -> None:
    """The most probable class's label (the first on ties, as numpy's argmax)."""
    position = scope.get_unique_variable_name("label_position")
    add_node(
        scope,
        container,
        "ArgMax",
        [probabilities],
        [position],
        axis=1,
        keepdims=0,
    )
    table = scope.get_unique_variable_name("labels")
    if np.asarray(labels).dtype.kind in "iu":
        container.add_initializer(table, TensorProto.INT64, [len(labels)], [int(v) for v in labels])
    else:
        container.add_initializer(
            table, TensorProto.STRING, [len(labels)], [str(v).encode() for v in labels]
        )
    container.add_node(
        "Gather", [table, position], [output], name=scope.get_unique_operator_name("Gather")
    )
