"""Concept drift: prediction ids, feedback checking, and live performance against the test split."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from pr2prod.errors import Pr2prodError
from pr2prod.model.metrics import classification_metrics
from pr2prod.monitor.drift import DRIFT, NO_DRIFT, NOT_ENOUGH_DATA
from pr2prod.monitor.labels import confusion_counts, labelled_predictions
from pr2prod.monitor.performance import (
    confusion_matrix,
    confusion_metrics,
    error_figures,
    error_findings,
    performance_findings,
)
from pr2prod.release.reference import prediction_reference
from pr2prod.serving.feedback import (
    ERROR_SUMS,
    MAX_OTHER_VERSIONS,
    FeedbackLog,
    FeedbackRefused,
    Judged,
    error_sums,
    parse_feedback,
    parse_prediction_id,
    prediction_id,
    value_prediction_id,
)
from pr2prod.serving.reference import PredictionReference, Reference
from pr2prod.settings import GateRule

CLASSES = ["malignant", "benign"]
GATE = {
    "accuracy": GateRule("higher", min=0.90, max_regression=0.02),
    "f1": GateRule("higher", min=0.90, max_regression=0.02),
    "roc_auc": GateRule("higher", min=0.95),  # needs probabilities: not compared live
}
# The sample model's test split: 114 rows, 4 malignant ones called benign.
TEST_CONFUSION = {"malignant": {"malignant": 38, "benign": 4}, "benign": {"benign": 72}}


def reference(confusion: dict | None = None) -> PredictionReference:
    return PredictionReference(
        rows=114,
        classes={"malignant": 38, "benign": 76},
        probability_bounds=(0.5, 1.0),
        probabilities={"malignant": (76, 38), "benign": (38, 76)},
        confusion=TEST_CONFUSION if confusion is None else confusion,
        positive_class="malignant",
    )


def feedback_body(*items: tuple[object, object]) -> dict:
    return {"feedback": [{"prediction_id": i, "label": label} for i, label in items]}


def test_a_prediction_id_carries_what_the_join_needs() -> None:
    first, second = prediction_id("abc123", 1), prediction_id("abc123", 1)

    (judged,) = parse_feedback(feedback_body((first, "malignant")), CLASSES, 10, {"abc123"})

    assert first != second
    assert judged == Judged(model_version="abc123", predicted="benign", actual="malignant")


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ([], "send {"),
        ({"feedback": []}, "send {"),
        ({"feedback": "x"}, "send {"),
        (feedback_body(("not-an-id", "benign")), "item 0: prediction_id is not an id"),
        (feedback_body((42, "benign")), "item 0: prediction_id is not an id"),
        (feedback_body(("v.7.0123456789ab", "benign")), "item 0: prediction_id names class 7"),
        (feedback_body(("v.0.0123456789ab", "cat")), "item 0: label must be one of"),
        ({"feedback": [{"prediction_id": "v.0.0123456789ab"}]}, 'exactly "prediction_id"'),
        ({"feedback": ["v.0.0123456789ab"]}, 'exactly "prediction_id"'),
    ],
)
def test_bad_feedback_is_refused_with_what_is_wrong(body: object, problem: str) -> None:
    with pytest.raises(FeedbackRefused) as refused:
        parse_feedback(body, CLASSES, 10, {"v"})

    assert refused.value.status == 400
    assert problem in str(refused.value)


def test_one_bad_item_refuses_the_whole_request_listing_every_problem() -> None:
    good = prediction_id("v", 0)
    body = feedback_body((good, "benign"), ("bad", "benign"), (good, "dog"))

    with pytest.raises(FeedbackRefused) as refused:
        parse_feedback(body, CLASSES, 10, {"v"})

    assert "item 1:" in str(refused.value) and "item 2:" in str(refused.value)
    assert "item 0" not in str(refused.value)


def test_too_many_items_or_versions_are_refused() -> None:
    items = [(prediction_id("v", 0), "benign")] * 11
    with pytest.raises(FeedbackRefused, match="at most 10"):
        parse_feedback(feedback_body(*items), CLASSES, 10, {"v"})

    others = [(prediction_id(f"old{n}", 0), "benign") for n in range(MAX_OTHER_VERSIONS + 1)]
    with pytest.raises(FeedbackRefused) as refused:
        parse_feedback(feedback_body(*others), CLASSES, 10, {"v"})
    assert refused.value.status == 409
    # Versions already counted stay welcome.
    known = {"v"} | {f"old{n}" for n in range(MAX_OTHER_VERSIONS)}
    assert len(parse_feedback(feedback_body(*others[:-1]), CLASSES, 10, known)) == 4


def test_classes_named_by_numbers_take_numeric_labels() -> None:
    (judged,) = parse_feedback(feedback_body((prediction_id("v", 1), 1)), ["0", "1"], 10, {"v"})
    assert judged.actual == "1"


def test_confusion_figures_equal_the_pipelines_metrics() -> None:
    rng = np.random.default_rng(3)
    for classes, positive in ((["a", "b"], "a"), (["a", "b", "c"], None)):
        probabilities = rng.dirichlet(np.ones(len(classes)), size=300)
        actual = rng.choice(classes, size=300)
        expected = classification_metrics(actual, probabilities, classes, positive)
        predicted = probabilities.argmax(axis=1)
        cells: dict[tuple[str, str], float] = {}
        for truth, index in zip(actual, predicted, strict=True):
            key = (str(truth), classes[index])
            cells[key] = cells.get(key, 0) + 1
        figures = confusion_metrics(
            confusion_matrix(cells, classes), classes.index(positive) if positive else None
        )
        for name in ("accuracy", "precision", "recall", "f1"):
            assert float(figures[name]) == pytest.approx(expected[name], abs=1e-6), name


def live_feedback(rng: np.random.Generator, rows: int, flipped: float) -> dict:
    """Labelled predictions from the test split's confusion matrix, with a share of the
    benign ones called malignant in truth (what the model now gets wrong)."""
    cells = [(a, p) for a, row in TEST_CONFUSION.items() for p in row]
    shares = np.array([TEST_CONFUSION[a][p] for a, p in cells], float)
    drawn = rng.multinomial(rows, shares / shares.sum())
    counts = {cell: float(n) for cell, n in zip(cells, drawn, strict=True)}
    moved = round(counts["benign", "benign"] * flipped)
    counts["benign", "benign"] -= moved
    counts["malignant", "benign"] += moved
    return counts


def test_a_ten_point_accuracy_loss_alarms_and_correct_labels_do_not() -> None:
    rng = np.random.default_rng(11)
    # 15% of benign predictions wrong: accuracy falls about ten points (0.965 to 0.87).
    degraded = performance_findings(
        reference(), live_feedback(rng, 500, 0.15), GATE, 0.01, 200, 1000, seed=0
    )
    assert {f.metric for f in degraded} == {"accuracy", "f1"}
    accuracy = next(f for f in degraded if f.metric == "accuracy")
    assert accuracy.verdict == DRIFT
    assert accuracy.test_value == pytest.approx(110 / 114)
    assert accuracy.live_interval[0] < accuracy.live_value < accuracy.live_interval[1]
    assert accuracy.delta_bound < -0.02

    alarms = sum(
        any(
            f.verdict == DRIFT
            for f in performance_findings(
                reference(), live_feedback(rng, 500, 0.0), GATE, 0.01, 200, 500, seed=0
            )
        )
        for _ in range(50)
    )
    assert alarms <= 1


def test_few_labels_or_no_test_confusion_decide_nothing() -> None:
    rng = np.random.default_rng(5)
    few = performance_findings(reference(), live_feedback(rng, 150, 0.5), GATE, 0.01, 200, 100, 0)
    assert few and all(f.verdict == NOT_ENOUGH_DATA for f in few)
    assert (
        performance_findings(reference({}), live_feedback(rng, 500, 0.5), GATE, 0.01, 200, 100, 0)
        == []
    )
    assert performance_findings(reference(), {}, GATE, 0.01, 200, 100, 0) == []


def test_the_reference_keeps_the_test_confusion_matrix_and_reads_old_files() -> None:
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.6, 0.4]])
    actual = np.array(["malignant", "benign", "benign"])
    made = prediction_reference(probabilities, CLASSES, actual, "malignant")
    assert made.confusion == {
        "malignant": {"malignant": 1, "benign": 0},
        "benign": {"malignant": 1, "benign": 1},
    }
    whole = Reference(rows=3, features={}, predictions=made)
    assert Reference.from_json(whole.to_json()) == whole

    old = Reference(rows=3, features={}, predictions=prediction_reference(probabilities, CLASSES))
    text = old.to_json().replace('"confusion": {},', "").replace(',\n  "positive_class": null', "")
    assert "confusion" not in text
    assert Reference.from_json(text).predictions.confusion == {}


def test_the_feedback_log_appends_every_accepted_item_as_a_json_line(tmp_path: Path) -> None:
    log = FeedbackLog(tmp_path / "labels")
    first, second = prediction_id("v", 0), prediction_id("v", 1)

    log.append([{"prediction_id": first, "label": "benign"}])
    log.append([{"prediction_id": second, "label": 1}])

    lines = [json.loads(line) for line in log.file.read_text().splitlines()]
    assert [(line["prediction_id"], line["label"]) for line in lines] == [
        (first, "benign"),
        (second, "1"),
    ]
    assert all(line["received"].endswith("Z") for line in lines)


def test_a_write_that_fails_leaves_no_torn_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    log = FeedbackLog(tmp_path)
    log.append([{"prediction_id": prediction_id("v", 0), "label": "benign"}])
    kept = log.file.read_bytes()

    def disk_full(descriptor: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space"):
        log.append([{"prediction_id": prediction_id("v", 1), "label": "malignant"}])

    assert log.file.read_bytes() == kept


def classes_of(version: str) -> list[str]:
    if version != "v":
        raise Pr2prodError(f"no model version {version} here")
    return CLASSES


def test_labels_files_give_confusion_counts_per_version_each_prediction_once(
    tmp_path: Path,
) -> None:
    right, wrong, twice = prediction_id("v", 0), prediction_id("v", 1), prediction_id("v", 1)
    log = FeedbackLog(tmp_path)
    log.append([{"prediction_id": right, "label": "malignant"}])
    log.append([{"prediction_id": twice, "label": "malignant"}])
    (tmp_path / "later.csv").write_text(f"prediction_id,label\n{wrong},malignant\n{twice},benign\n")
    (tmp_path / "notes.txt").write_text("not labels")

    counted = {
        v: confusion_counts(j) for v, j in labelled_predictions(tmp_path, classes_of).items()
    }

    # `twice` counts once, with the label of the later file (read in name order).
    assert counted == {"v": {("malignant", "malignant"): 1, ("malignant", "benign"): 1,
                             ("benign", "benign"): 1}}  # fmt: skip
    (only,) = labelled_predictions(tmp_path / "later.csv", classes_of).values()
    assert confusion_counts(only) == {("malignant", "benign"): 1, ("benign", "benign"): 1}


def test_bad_labels_files_name_every_bad_row_and_count_nothing(tmp_path: Path) -> None:
    good = prediction_id("v", 0)
    (tmp_path / "a.jsonl").write_text(
        json.dumps({"prediction_id": good, "label": "benign"})
        + "\n{torn\n"
        + json.dumps({"prediction_id": "x", "label": "benign"})
        + "\n"
        + json.dumps({"prediction_id": good, "label": "dog"})
        + "\n"
    )
    with pytest.raises(Pr2prodError) as failed:
        labelled_predictions(tmp_path, classes_of)
    message = str(failed.value)
    assert "a.jsonl:2: not a JSON object" in message
    assert "a.jsonl:3: prediction_id is not an id" in message
    assert "a.jsonl:4: label must be one of" in message

    (tmp_path / "a.jsonl").unlink()
    (tmp_path / "b.csv").write_text("id,truth\n1,benign\n")
    with pytest.raises(Pr2prodError, match="no prediction_id and label columns"):
        labelled_predictions(tmp_path, classes_of)
    with pytest.raises(Pr2prodError, match="does not exist"):
        labelled_predictions(tmp_path / "missing", classes_of)


def test_a_regressors_id_carries_its_value_and_feedback_is_summed() -> None:
    identifier = value_prediction_id("r1", 12.345678901234)

    parsed = parse_prediction_id(identifier)
    (judged,) = parse_feedback(feedback_body((identifier, "10.5")), [], 10, {"r1"})

    assert parsed is not None and parsed.value == 12.345678901234
    assert judged == Judged("r1", 12.345678901234, 10.5)
    sums = error_sums([judged, Judged("r1", 1.0, 2.0)])
    first = 12.345678901234 - 10.5
    expected = (2, first + 1, first**2 + 1, first**4 + 1)
    assert sums == pytest.approx(dict(zip(ERROR_SUMS, expected, strict=True)))


@pytest.mark.parametrize(
    ("identifier", "label", "problem"),
    [
        (prediction_id("r1", 0), 3.0, "names a class"),
        (value_prediction_id("r1", 1.0), "tall", "must be a number"),
        (value_prediction_id("r1", 1.0), float("inf"), "finite number"),
        (value_prediction_id("r1", 1.0), True, "finite number"),
    ],
)
def test_a_regressors_feedback_is_checked(identifier: str, label: object, problem: str) -> None:
    with pytest.raises(FeedbackRefused, match=problem):
        parse_feedback({"feedback": [{"prediction_id": identifier, "label": label}]}, [], 10, set())
    with pytest.raises(FeedbackRefused, match="a regressor's"):
        parse_feedback(feedback_body((value_prediction_id("v", 1.0), "benign")), CLASSES, 10, set())


def errors_of(rng: np.random.Generator, rows: int, scale: float) -> dict[str, float]:
    errors = np.abs(rng.normal(0, scale, rows))
    sums = (rows, errors.sum(), (errors**2).sum(), (errors**4).sum())
    return dict(zip(ERROR_SUMS, sums, strict=True))


def test_a_regressors_live_errors_are_judged_by_the_gate() -> None:
    gate = {
        "mae": GateRule("lower", max=55, max_regression=3),
        "rmse": GateRule("lower", max=70, max_regression=3),
        "r2": GateRule("higher", min=0.3),  # needs the true values' spread: not compared live
    }
    rng = np.random.default_rng(4)
    test = errors_of(rng, 90, 50.0)

    same = error_findings(test, errors_of(rng, 400, 50.0), gate, 0.01, 200)
    worse = error_findings(test, errors_of(rng, 400, 90.0), gate, 0.01, 200)
    few = error_findings(test, errors_of(rng, 100, 70.0), gate, 0.01, 200)

    assert {f.metric for f in same} == {"mae", "rmse"}
    assert all(f.verdict == NO_DRIFT for f in same)
    assert all(f.verdict == DRIFT for f in worse)
    assert all(f.verdict == NOT_ENOUGH_DATA for f in few)
    mae, _ = error_figures(test)["mae"]
    assert mae == pytest.approx(test["absolute"] / 90)
    assert error_findings({}, errors_of(rng, 400, 70.0), gate, 0.01, 200) == []
