"""Prediction ids and `POST /feedback`: true labels, joined to the predictions they judge.

Labels usually arrive long after the prediction (a claim is settled, a diagnosis is
confirmed), often at another replica, after restarts and rollouts. So the join needs no
state in the service: a prediction id carries what the join needs, the model version and
the prediction (a class's index, or a regressor's value as the 16 hex digits of its 64-bit
float), plus random characters that make it unique:

    <model version>.<index of the predicted class>.<12 hex characters>
    <model version>.x<16 hex digits of the predicted value>.<12 hex characters>

Feedback for a class is counted at once in `pr2prod_feedback_total{predicted_class,
actual_class, model_version}`, a confusion matrix per version; for a value, in
`pr2prod_feedback_errors_total{sum, model_version}`, the labelled predictions and the sums
of their absolute errors to the first, second and fourth power (enough for the mean
absolute error, the root mean squared error and the spread of each). Prometheus scrapes
both like every other count. Memory does not grow with traffic (no table of past predictions
to evict, nothing lost when a process restarts before the label comes), and any replica
of any version can take any feedback. A client could forge an id, but a client trusted
to send labels can as well send wrong ones: put /feedback behind the same access
control as /predict.

A request is all or nothing: one bad item (malformed id, unknown class) refuses the
whole request with 400 and every problem listed, so a client can fix it and send it again
without counting anything twice.
"""

from __future__ import annotations

import json
import math
import os
import re
import secrets
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

FEEDBACK_ITEMS = "feedback"
ID_PATTERN = re.compile(
    r"(?P<version>[A-Za-z0-9_-]{1,64})\.(?:(?P<index>\d{1,4})|x(?P<value>[0-9a-f]{16}))"
    r"\.[0-9a-f]{12}"
)
# pr2prod_feedback_errors_total's `sum` label: labelled predictions, then the sums of
# |error|, error^2 and error^4 (every term at least zero, as a counter's increments must be).
LABELLED = "labelled"
ERROR_SUMS = (LABELLED, "absolute", "squared", "fourth_power")
# Feedback for predictions of other versions (made before a rollout) is counted under
# their version; a few at most, so random version strings cannot grow the series unbounded.
MAX_OTHER_VERSIONS = 4
MAX_PROBLEMS_LISTED = 10


def prediction_id(model_version: str, class_index: int) -> str:
    return f"{model_version}.{class_index}.{secrets.token_hex(6)}"


def value_prediction_id(model_version: str, value: float) -> str:
    return f"{model_version}.x{struct.pack('>d', value).hex()}.{secrets.token_hex(6)}"


@dataclass(frozen=True)
class PredictionId:
    """What an id carries: the model version, and the class index or the predicted value."""

    model_version: str
    class_index: int | None = None
    value: float | None = None


def parse_prediction_id(text: Any) -> PredictionId | None:
    """What an id carries; None if it is no id /predict makes."""
    matched = ID_PATTERN.fullmatch(text) if isinstance(text, str) else None
    if matched is None:
        return None
    if matched["value"] is not None:
        value = struct.unpack(">d", bytes.fromhex(matched["value"]))[0]
        return PredictionId(matched["version"], value=value) if math.isfinite(value) else None
    return PredictionId(matched["version"], class_index=int(matched["index"]))


def error_sums(judged: Sequence[Judged]) -> dict[str, float]:
    """A regressor's labelled predictions as the counts and sums ERROR_SUMS names."""
    errors = [abs(float(item.predicted) - float(item.actual)) for item in judged]
    return dict(
        zip(
            ERROR_SUMS,
            (len(errors), sum(errors), sum(e**2 for e in errors), sum(e**4 for e in errors)),
            strict=True,
        )
    )


@dataclass(frozen=True)
class Judged:
    """One labelled prediction: which version made it, what it said, what was true (a
    class, or a regressor's value)."""

    model_version: str
    predicted: str | float
    actual: str | float


class FeedbackRefused(ValueError):
    """The request's feedback cannot be counted; `status` is the HTTP status to answer."""

    def __init__(self, status: int, problems: Sequence[str]) -> None:
        listed = list(problems[:MAX_PROBLEMS_LISTED])
        if len(problems) > MAX_PROBLEMS_LISTED:
            listed.append(f"... and {len(problems) - MAX_PROBLEMS_LISTED} more")
        super().__init__("; ".join(listed))
        self.status = status


def parse_feedback(
    body: Any, classes: Sequence[str], max_items: int, known_versions: set[str]
) -> list[Judged]:
    """The feedback in a request body, every item checked, or FeedbackRefused.

    `known_versions`: versions feedback was counted for so far (this one's included); an
    item for a version beyond MAX_OTHER_VERSIONS others is refused.
    """
    items = body.get(FEEDBACK_ITEMS) if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise FeedbackRefused(
            400,
            [
                'send {"feedback": [{"prediction_id": "<the id /predict returned>", '
                '"label": "<the true class>"}, ...]}'
            ],
        )
    if len(items) > max_items:
        raise FeedbackRefused(400, [f"{len(items)} items; send at most {max_items} at once"])
    judged: list[Judged] = []
    problems: list[str] = []
    versions = set(known_versions)
    for place, item in enumerate(items):
        found = _judged(item, classes)
        if isinstance(found, str):
            problems.append(f"item {place}: {found}")
            continue
        versions.add(found.model_version)
        judged.append(found)
    if problems:
        raise FeedbackRefused(400, problems)
    if len(versions) > len(known_versions) and len(versions) > MAX_OTHER_VERSIONS + 1:
        raise FeedbackRefused(
            409,
            [
                f"feedback for {len(versions)} model versions; this service counts its own "
                f"and at most {MAX_OTHER_VERSIONS} others: send the rest to a service "
                "running their version, or add the labelled rows to the data"
            ],
        )
    return judged


def _judged(item: Any, classes: Sequence[str]) -> Judged | str:
    """The item as a Judged, or what is wrong with it."""
    if not isinstance(item, dict) or set(item) != {"prediction_id", "label"}:
        return 'expected an object with exactly "prediction_id" and "label"'
    return judged_item(item["prediction_id"], item["label"], classes)


def judged_item(identifier: Any, label: Any, classes: Sequence[str]) -> Judged | str:
    """A prediction id and its true label as a Judged, or what is wrong with them.

    `classes`: the model's classes; none for a regressor, whose labels are numbers.
    """
    parsed = parse_prediction_id(identifier)
    if parsed is None:
        return "prediction_id is not an id /predict returned"
    if not classes:
        return _judged_value(parsed, label)
    if parsed.class_index is None:
        return "prediction_id is a regressor's, but this model predicts classes"
    if isinstance(label, int) and not isinstance(label, bool):
        label = str(label)  # classes named by numbers, sent as JSON numbers
    version, index = parsed.model_version, parsed.class_index
    if index >= len(classes):
        return f"prediction_id names class {index}, but the model has {len(classes)} classes"
    if not isinstance(label, str) or label not in classes:
        return f"label must be one of the classes {', '.join(classes)}"
    return Judged(version, classes[index], label)


def _judged_value(parsed: PredictionId, label: Any) -> Judged | str:
    if parsed.value is None:
        return "prediction_id names a class, but this model predicts numbers"
    if isinstance(label, str):
        try:
            label = float(label)
        except ValueError:
            return "label must be a number, the true value"
    if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
        return "label must be a finite number, the true value"
    return Judged(parsed.model_version, parsed.value, float(label))


class FeedbackLog:
    """Accepted feedback, appended as JSON lines to a file of this process in `folder`.

    Counters live in memory until Prometheus scrapes them; this file keeps every label for
    good (retraining, audits, `pr2prod monitor --labels`). A request's lines are written in
    one call and synced to disk before the client hears 200; when that fails, the client
    hears 503 and nothing is counted, so sending it again loses and doubles nothing.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._file: Path | None = None

    @property
    def file(self) -> Path:
        # Named when first used, in the worker process that writes it: one file per process,
        # so workers never interleave their lines.
        if self._file is None:
            stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
            self._file = self.folder / f"feedback-{stamp}-{os.getpid()}.jsonl"
        return self._file

    def append(self, items: Sequence[dict[str, Any]]) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        received = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        lines = "".join(
            json.dumps(
                {
                    "prediction_id": item["prediction_id"],
                    "label": str(item["label"]),
                    "received": received,
                }
            )
            + "\n"
            for item in items
        )
        # Unbuffered: what failed to reach the file cannot be written later, at close.
        with self.file.open("ab", buffering=0) as handle:
            size = handle.seek(0, os.SEEK_END)
            try:
                data = lines.encode()
                if handle.write(data) != len(data):
                    raise OSError(f"only part of the feedback reached {self.file}")
                os.fsync(handle.fileno())
            except OSError:
                handle.truncate(size)  # no torn line left behind for the resent request
                raise
