"""The drift benchmark's rows about the model's answers: prediction drift and concept drift.

Both draw traffic from the test split, the rows the model's prediction reference and its
test confusion matrix were made from (so unshifted traffic is exactly their population),
and need no server: the model answers the 114 test rows once, and each stream resamples
those answers.

- Prediction drift: the shifted-probabilities model of the canary benchmark
  (bench.faults.Shifted, probabilities pulled towards the middle, the same ranking), served
  as if it were the stable version. Ours: the monitor's prediction findings (predicted
  classes, probability histograms; pr2prod.monitor.drift) on the last WINDOW answers every
  CHECK_EVERY, Holm at ALPHA per check. Baseline: the Evidently-style score on each class's
  probability, windows of BASELINE_WINDOW.
- Concept drift: the inputs and the model unchanged, but for a share of the rows of one
  class the true label that comes back is another class, enough to take accuracy down 10
  points. Ours: the monitor's live-performance check (pr2prod.monitor.performance, the
  gate's rules of params.yaml, `monitor.min_rows` labels at least) on every label since the
  stream began, every CHECK_EVERY labels, at ALPHA per check. Baseline: accuracy on fixed
  windows of BASELINE_WINDOW labels against the test split's, alarming when lower by more
  than the gate's `max_regression` (no interval: the fixed-threshold check a dashboard
  gives).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import joblib
import numpy as np
from scipy.stats import wasserstein_distance

from bench.faults import Shifted
from pr2prod import paths
from pr2prod.data.records import split_records
from pr2prod.data.validation import load_typed
from pr2prod.monitor.drift import DRIFT, prediction_findings, with_verdicts
from pr2prod.monitor.live import LiveCounts
from pr2prod.monitor.performance import performance_findings
from pr2prod.release.reference import prediction_reference
from pr2prod.schema import load_schema
from pr2prod.serving.inference import PipelineRunner
from pr2prod.serving.reference import PredictionReference
from pr2prod.settings import Settings, load_settings

ACCURACY_DROP = 0.10  # concept drift: the live accuracy this many points below the test split's
BOOTSTRAP = 500  # resamples per live-performance check (the monitor takes the report's count)


@dataclass(frozen=True)
class Answers:
    """The test split's rows as the model answered them, and their true classes."""

    classes: list[str]
    genuine: np.ndarray  # probabilities, a row per test row, a column per class
    shifted: np.ndarray  # the shifted-probabilities model's
    actual: np.ndarray  # class indices
    reference: PredictionReference
    settings: Settings

    @classmethod
    def load(cls) -> Answers:
        schema, settings = load_schema(paths.SCHEMA), load_settings()
        records = split_records(paths.TEST_SPLIT, schema)
        model = joblib.load(paths.MODEL)
        genuine = PipelineRunner(model, schema).probabilities(records)
        shifted = PipelineRunner(Shifted(model, power=0.3), schema).probabilities(records)
        classes = list(schema.target.classes)
        labels = load_typed(paths.TEST_SPLIT, schema)[schema.target.name].astype(str)
        actual = np.array([classes.index(label) for label in labels])
        reference = prediction_reference(
            genuine, classes, labels.to_numpy(), schema.target.positive_class
        )
        return cls(classes, genuine, shifted, actual, reference, settings)


def prediction_counts(probabilities: np.ndarray, answers: Answers) -> LiveCounts:
    """What the service would count for these answers (classes, cumulative buckets)."""
    bounds = np.asarray(answers.reference.probability_bounds)
    predicted = np.bincount(probabilities.argmax(axis=1), minlength=len(answers.classes))
    cumulative = {}
    for index, label in enumerate(answers.classes):
        buckets = np.bincount(
            np.searchsorted(bounds, probabilities[:, index], side="left"), minlength=len(bounds)
        )
        cumulative[label] = dict(zip(bounds.tolist(), np.cumsum(buckets).tolist(), strict=True))
    return LiveCounts(
        predicted=dict(zip(answers.classes, predicted.astype(float).tolist(), strict=True)),
        probabilities=cumulative,
    )


def sequential_alarms(
    length: int,
    check_every: int,
    window: int | None,
    min_rows: int,
    drifted: Callable[[int, int], bool],
    first_only: bool = False,
) -> list[int]:
    """Where a monitor checking every `check_every` records alarms, restarting after each.

    A check judges records [since, end): the last `window` (None: all since the start or
    the last alarm), and only with at least `min_rows` of them; `drifted(since, end)` says
    whether it alarms.
    """
    alarms, start = [], 0
    for end in range(check_every, length + 1, check_every):
        since = start if window is None else max(start, end - window)
        if end - since < min_rows:
            continue
        if drifted(since, end):
            alarms.append(end)
            start = end
            if first_only:
                break
    return alarms


def prediction_alarms(
    answers: Answers,
    probabilities: np.ndarray,
    check_every: int,
    window: int,
    alpha: float,
    min_rows: int,
    first_only: bool = False,
) -> list[int]:
    """The answers at which our monitor's prediction findings alarm."""

    def drifted(since: int, end: int) -> bool:
        live = prediction_counts(probabilities[since:end], answers)
        findings = prediction_findings(answers.reference, live, min_rows)
        return any(f.verdict == DRIFT for f in with_verdicts(findings, alpha))

    length = len(probabilities)
    return sequential_alarms(length, check_every, window, min_rows, drifted, first_only)


def prediction_baseline_alarms(
    answers: Answers, probabilities: np.ndarray, window: int, threshold: float
) -> list[int]:
    """Evidently-style: a class's probability drifts when its normed Wasserstein distance to
    the test split's is at least `threshold`, on fixed windows."""
    alarms = []
    for end in range(window, len(probabilities) + 1, window):
        live = probabilities[end - window : end]
        for index in range(len(answers.classes)):
            reference = answers.genuine[:, index]
            spread = float(reference.std()) or 1.0
            if wasserstein_distance(reference, live[:, index]) / spread >= threshold:
                alarms.append(end)
                break
    return alarms


def relabelling(answers: Answers) -> tuple[int, float]:
    """The class whose labels change, and the share of its rows changed, so that accuracy
    falls ACCURACY_DROP: rows of the class the model predicts right lose that much."""
    predicted = answers.genuine.argmax(axis=1)
    right = [np.mean((answers.actual == c) & (predicted == c)) for c in range(len(answers.classes))]
    chosen = int(np.argmax(right))
    return chosen, min(1.0, ACCURACY_DROP / right[chosen])


def labelled_stream(
    answers: Answers, rows: int, rng: np.random.Generator, changed_share: float
) -> tuple[np.ndarray, np.ndarray]:
    """(predicted, actual) class indices of `rows` labelled answers; `changed_share` of the
    chosen class's labels come back as the next class."""
    drawn = rng.integers(0, len(answers.actual), rows)
    predicted, actual = answers.genuine.argmax(axis=1)[drawn], answers.actual[drawn].copy()
    chosen, _ = relabelling(answers)
    change = (actual == chosen) & (rng.random(rows) < changed_share)
    actual[change] = (chosen + 1) % len(answers.classes)
    return predicted, actual


def confusion_cells(
    answers: Answers, predicted: np.ndarray, actual: np.ndarray
) -> dict[tuple[str, str], float]:
    size = len(answers.classes)
    counts = np.bincount(actual * size + predicted, minlength=size * size).reshape(size, size)
    return {
        (answers.classes[a], answers.classes[p]): float(counts[a, p])
        for a in range(size)
        for p in range(size)
    }


def performance_alarms(
    answers: Answers,
    predicted: np.ndarray,
    actual: np.ndarray,
    check_every: int,
    alpha: float,
    first_only: bool = False,
) -> list[int]:
    """The labels at which our live-performance check alarms, judging every label since the
    stream (or the last alarm) began."""
    monitor, gate = answers.settings.monitor, answers.settings.gate

    def drifted(since: int, end: int) -> bool:
        cells = confusion_cells(answers, predicted[since:end], actual[since:end])
        findings = performance_findings(
            answers.reference, cells, gate, alpha, monitor.min_rows, BOOTSTRAP, seed=end
        )
        return any(f.verdict == DRIFT for f in findings)

    length = len(actual)
    return sequential_alarms(length, check_every, None, monitor.min_rows, drifted, first_only)


def accuracy_baseline_alarms(
    answers: Answers, predicted: np.ndarray, actual: np.ndarray, window: int
) -> list[int]:
    """Accuracy on fixed windows below the test split's by more than the gate allows."""
    rule = answers.settings.gate.get("accuracy")
    allowed = rule.max_regression if rule and rule.max_regression is not None else 0.0
    test = float(np.mean(answers.genuine.argmax(axis=1) == answers.actual))
    return [
        end
        for end in range(window, len(actual) + 1, window)
        if np.mean(predicted[end - window : end] == actual[end - window : end]) < test - allowed
    ]


def first(alarms: list[int]) -> float:
    return float(alarms[0]) if alarms else math.inf
