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
    classes = len(model.classes_)
    features = operator.inputs[0].full_name
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
        n_targets=classes,
        aggregate_function=SUM,
        post_transform=0,
        **_ensemble_attributes(trees, classes),
    )
    count = scope.get_unique_variable_name("tree_count")
    container.add_initializer(count, TensorProto.DOUBLE, [], [float(len(trees))])
    probabilities = operator.outputs[1].full_name
    container.add_node(
        "Div", [sums, count], [probabilities], name=scope.get_unique_operator_name("Div")
    )
    _label(scope, container, model.classes_, probabilities, operator.outputs[0].full_name)


def _ensemble_attributes(trees: list[Any], classes: int) -> dict[str, Any]:
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
    for tree in trees:
        left, right = tree.children_left, tree.children_right
        is_leaf = left == -1
        fractions = tree.value[:, 0, :] / tree.value[:, 0, :].sum(axis=1, keepdims=True)
        for target in range(classes):
            branch_base, leaf_base = len(nodes["featureids"]), len(leaf_targets)
            branch_index = np.cumsum(~is_leaf) - 1 + branch_base
            leaf_index = np.cumsum(is_leaf) - 1 + leaf_base
            leaves = np.flatnonzero(is_leaf)
            leaf_targets += [target] * len(leaves)
            leaf_weights += fractions[leaves, target].tolist()
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
