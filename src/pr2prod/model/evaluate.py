"""`pr2prod evaluate`: test-set metrics, per-row predictions and the data behind the plots.

For a binary target, precision, recall, F1 and the ROC/PR curves are about the schema's
positive class; for more classes they are macro averages and micro-averaged curves. For
a numeric target: errors (RMSE, MAE, median absolute error, MAPE), R2, and each row's
prediction and residual, which the plots of predicted against actual values draw.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn import metrics
from sklearn.preprocessing import label_binarize

from pr2prod import paths
from pr2prod.data.validation import load_typed
from pr2prod.model.artifact import load_pipeline_model
from pr2prod.model.metrics import DECIMALS, classification_metrics
from pr2prod.model.regression_metrics import regression_metrics
from pr2prod.schema import FeatureSchema

# The plot data files in results/plots/, by task (the report draws them, and DVC those of
# dvc.yaml's `plots:`).
ROC_FILE, PRECISION_RECALL_FILE = paths.ROC_CURVE.name, paths.PR_CURVE.name
RESIDUALS_FILE = paths.RESIDUALS.name


@dataclass(frozen=True)
class Evaluation:
    metrics: dict[str, object]
    predictions: pd.DataFrame
    plots: dict[str, pd.DataFrame]  # file name in results/plots/ -> its rows


def evaluate_model(model_path: Path, test_path: Path, schema: FeatureSchema) -> Evaluation:
    model = load_pipeline_model(model_path)
    test = load_typed(test_path, schema)
    if schema.target.is_numeric:
        return _evaluate_regressor(model, test, schema)
    classes = list(schema.target.classes)
    actual = test[schema.target.name].astype(str).to_numpy()
    # Columns in schema order, whatever order the estimator learnt the classes in.
    order = [list(map(str, model.classes_)).index(label) for label in classes]
    probabilities = model.predict_proba(test[schema.feature_names])[:, order]
    predicted = np.asarray(classes)[probabilities.argmax(axis=1)]
    scores, truth = _curve_inputs(actual, probabilities, schema)
    return Evaluation(
        metrics=classification_metrics(
            actual, probabilities, classes, schema.target.positive_class
        ),
        predictions=_predictions(test, schema, actual, predicted, probabilities),
        plots={
            ROC_FILE: _roc(truth, scores),
            PRECISION_RECALL_FILE: _precision_recall(truth, scores),
        },
    )


def _evaluate_regressor(model, test: pd.DataFrame, schema: FeatureSchema) -> Evaluation:
    actual = test[schema.target.name].to_numpy(dtype=float)
    predicted = np.asarray(model.predict(test[schema.feature_names]), dtype=float)
    predictions = pd.DataFrame(
        {
            "row_id": row_ids(len(test)),
            "actual": actual.round(DECIMALS),
            "predicted": predicted.round(DECIMALS),
            "residual": (actual - predicted).round(DECIMALS),
        }
    )
    return Evaluation(
        metrics=regression_metrics(actual, predicted),
        predictions=predictions,
        plots={RESIDUALS_FILE: predictions[["actual", "predicted", "residual"]]},
    )


def _predictions(
    test: pd.DataFrame,
    schema: FeatureSchema,
    actual: np.ndarray,
    predicted: np.ndarray,
    probabilities: np.ndarray,
) -> pd.DataFrame:
    frame = pd.DataFrame({"row_id": row_ids(len(test)), "actual": actual, "predicted": predicted})
    for index, label in enumerate(schema.target.classes):
        frame[f"proba_{label}"] = probabilities[:, index].round(DECIMALS)
    return frame


def row_ids(rows: int) -> list[str]:
    """Each test row's place in the test split, which the seeded split fixes.

    Not derived from the row's content: an id tells nothing about a person, so knowing
    someone's features does not find their row (a hash of the features would, and with it
    whether they are in the test set and their label). Two revisions that split the same
    data with the same seed and test size have the same rows in the same places, so their
    ids match row for row and the report's bootstrap is paired; when the data or the split
    changes, dvc.lock records another test split and it is unpaired (the report checks).
    """
    width = max(4, len(str(rows - 1)))
    return [f"{index:0{width}d}" for index in range(rows)]


def _curve_inputs(
    actual: np.ndarray, probabilities: np.ndarray, schema: FeatureSchema
) -> tuple[np.ndarray, np.ndarray]:
    classes = list(schema.target.classes)
    if schema.target.is_binary:
        positive = classes.index(schema.target.positive_class)
        return probabilities[:, positive], actual == schema.target.positive_class
    # Micro-average: every (row, class) pair is one binary decision.
    return probabilities.ravel(), label_binarize(actual, classes=classes).ravel().astype(bool)


def _roc(truth: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    fpr, tpr, _ = metrics.roc_curve(truth, scores)
    return pd.DataFrame({"fpr": fpr, "tpr": tpr}).round(DECIMALS)


def _precision_recall(truth: np.ndarray, scores: np.ndarray) -> pd.DataFrame:
    precision, recall, _ = metrics.precision_recall_curve(truth, scores)
    return pd.DataFrame({"recall": recall, "precision": precision}).round(DECIMALS)


def write_evaluation(
    evaluation: Evaluation, metrics_path: Path, predictions_path: Path, plots_dir: Path
) -> None:
    """Write the metrics, the predictions and the task's plot files (plots_dir holds those
    and nothing else: another task's files left there would be drawn as this model's)."""
    for path in (metrics_path, predictions_path):
        path.parent.mkdir(parents=True, exist_ok=True)
    if plots_dir.exists():
        shutil.rmtree(plots_dir)
    plots_dir.mkdir(parents=True)
    metrics_path.write_text(json.dumps(evaluation.metrics, indent=2) + "\n")
    evaluation.predictions.to_csv(predictions_path, index=False, lineterminator="\n")
    for name, frame in evaluation.plots.items():
        frame.to_csv(plots_dir / name, index=False, lineterminator="\n")
