"""The numpy metrics agree with scikit-learn's definitions, for binary and multiclass targets."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn import metrics

from pr2prod.model.metrics import classification_metrics, flatten_metrics
from pr2prod.model.regression_metrics import regression_metrics


def random_case(classes: list[str], rows: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    actual = rng.choice(classes, rows)
    raw = rng.random((rows, len(classes))).round(2)  # rounding makes ties, as real models do
    raw[np.arange(rows), [classes.index(label) for label in actual]] += 0.4  # some signal
    return actual, raw / raw.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("seed", range(5))
def test_binary_metrics_match_scikit_learn(seed: int) -> None:
    classes = ["sick", "healthy"]
    actual, probabilities = random_case(classes, 150, seed)
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    expected = {
        "accuracy": metrics.accuracy_score(actual, predicted),
        "precision": metrics.precision_score(actual, predicted, pos_label="sick"),
        "recall": metrics.recall_score(actual, predicted, pos_label="sick"),
        "f1": metrics.f1_score(actual, predicted, pos_label="sick"),
        "roc_auc": metrics.roc_auc_score(actual == "sick", probabilities[:, 0]),
        "log_loss": metrics.log_loss(actual, probabilities[:, [1, 0]], labels=["healthy", "sick"]),
    }

    figures = classification_metrics(actual, probabilities, classes, "sick")

    for name, value in expected.items():
        assert figures[name] == pytest.approx(value, abs=1e-6), name


@pytest.mark.parametrize("seed", range(5))
def test_multiclass_metrics_are_scikit_learns_macro_averages(seed: int) -> None:
    classes = ["a", "b", "c"]
    actual, probabilities = random_case(classes, 200, seed)
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    macro = {"average": "macro", "labels": classes, "zero_division": 0}

    figures = classification_metrics(actual, probabilities, classes, None)

    precision, recall, f1, _ = metrics.precision_recall_fscore_support(actual, predicted, **macro)
    assert (figures["precision"], figures["recall"], figures["f1"]) == pytest.approx(
        (precision, recall, f1)
    )
    assert figures["roc_auc"] == pytest.approx(
        metrics.roc_auc_score(actual, probabilities, multi_class="ovr", labels=classes)
    )
    report = metrics.classification_report(actual, predicted, output_dict=True)
    for label in classes:
        assert figures["per_class"][label]["f1"] == pytest.approx(report[label]["f1-score"])
        assert figures["per_class"][label]["support"] == report[label]["support"]


def test_a_class_never_predicted_scores_zero_not_an_error() -> None:
    actual = np.array(["a", "b", "b", "a"])
    probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3], [0.6, 0.4]])

    figures = classification_metrics(actual, probabilities, ["a", "b"], "b")

    assert figures["precision"] == 0.0 and figures["recall"] == 0.0 and figures["f1"] == 0.0


def test_roc_auc_is_undefined_with_a_single_class() -> None:
    figures = classification_metrics(
        np.array(["a", "a"]), np.array([[0.9, 0.1], [0.4, 0.6]]), ["a", "b"], "b"
    )

    assert np.isnan(figures["roc_auc"])


def test_flatten_names_nested_figures_by_path() -> None:
    flat = flatten_metrics({"f1": 0.5, "per_class": {"a": {"f1": 0.25, "support": 3}}})

    assert flat == {"f1": 0.5, "per_class.a.f1": 0.25, "per_class.a.support": 3.0}


@pytest.mark.parametrize("seed", range(5))
def test_regression_metrics_match_scikit_learn(seed: int) -> None:
    rng = np.random.default_rng(seed)
    actual = rng.lognormal(3, 1, 80)
    predicted = actual + rng.normal(0, 5, 80)

    found = regression_metrics(actual, predicted)

    assert found["rmse"] == pytest.approx(metrics.root_mean_squared_error(actual, predicted))
    assert found["mae"] == pytest.approx(metrics.mean_absolute_error(actual, predicted))
    assert found["median_absolute_error"] == pytest.approx(
        metrics.median_absolute_error(actual, predicted)
    )
    assert found["r2"] == pytest.approx(metrics.r2_score(actual, predicted), abs=1e-6)
    assert found["mape"] == pytest.approx(
        metrics.mean_absolute_percentage_error(actual, predicted), abs=1e-6
    )
    assert found["test_rows"] == 80


def test_mape_is_left_out_when_a_true_value_is_zero() -> None:
    found = regression_metrics(np.array([0.0, 1.0, 2.0]), np.array([0.5, 1.0, 2.5]))
    assert "mape" not in found and found["mae"] == pytest.approx(1 / 3, abs=1e-6)
