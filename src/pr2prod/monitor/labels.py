"""Labelled predictions from files: the service's feedback log, or labels a team collects.

A file holds one labelled prediction per row, the prediction id /predict returned and the
true label: JSON lines (`{"prediction_id": ..., "label": ...}`, what the service appends
under PR2PROD_FEEDBACK_LOG) or a CSV with those two columns. Kept in a DVC-tracked folder,
the labels are versioned with the code and data that judged them.

An id names its model version and predicted class (pr2prod.serving.feedback), so the join
needs nothing else. A prediction labelled twice (a request sent again, two exports of the
same labels) counts once, with its last label.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path

from pr2prod.errors import Pr2prodError
from pr2prod.serving.feedback import Judged, judged_item, parse_prediction_id
from pr2prod.serving.reference import PredictionReference, Reference

SUFFIXES = (".jsonl", ".csv")
NOT_JSON = object()  # a line of a JSON-lines file that is no JSON object
MAX_PROBLEMS_LISTED = 10
Confusion = dict[tuple[str, str], float]  # (actual class, predicted class) -> predictions


def labelled_files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise Pr2prodError(
            f"{path} does not exist", hint="pass a labels file or a folder of them (--labels)"
        )
    files = sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES and p.is_file())
    if not files:
        raise Pr2prodError(
            f"{path} holds no {' or '.join(SUFFIXES)} file",
            hint="put the service's feedback log files, or CSVs with the columns "
            "prediction_id and label, in it",
        )
    return files


def labelled_predictions(
    path: Path, classes_for: Callable[[str], list[str]]
) -> dict[str, list[Judged]]:
    """Per model version, its labelled predictions, each once.

    `classes_for(version)`: that version's classes, in the order its ids number them (none
    for a regressor). Every row is checked before anything counts; problems raise one
    error listing them.
    """
    latest: dict[str, Judged] = {}
    problems: list[str] = []
    for where, identifier, label in _rows(labelled_files(path)):
        if identifier is NOT_JSON:
            problems.append(f"{where}: not a JSON object")
            continue
        parsed = parse_prediction_id(identifier)
        if parsed is None:
            problems.append(f"{where}: prediction_id is not an id /predict returned")
            continue
        judged = judged_item(identifier, label, classes_for(parsed.model_version))
        if isinstance(judged, str):
            problems.append(f"{where}: {judged}")
            continue
        latest[identifier] = judged
    if problems:
        listed = problems[:MAX_PROBLEMS_LISTED]
        more = len(problems) - len(listed)
        raise Pr2prodError(
            "labels that cannot be counted:\n  "
            + "\n  ".join(listed)
            + (f"\n  ... and {more} more" if more else ""),
            hint="fix or remove those rows; nothing was counted",
        )
    versions: dict[str, list[Judged]] = {}
    for judged in latest.values():
        versions.setdefault(judged.model_version, []).append(judged)
    return versions


def classes_of(reference: Reference) -> list[str]:
    """A model's classes in the order its ids number them; none for a regressor."""
    predictions = reference.predictions
    return list(predictions.classes) if isinstance(predictions, PredictionReference) else []


def confusion_counts(judged: list[Judged]) -> Confusion:
    """Labelled class predictions as {(actual, predicted): count}."""
    cells: Confusion = {}
    for item in judged:
        cell = (str(item.actual), str(item.predicted))
        cells[cell] = cells.get(cell, 0.0) + 1
    return cells


def _rows(files: list[Path]) -> Iterator[tuple[str, object, object]]:
    """(file:line, prediction id, label) of every row of every file."""
    for file in files:
        if file.suffix == ".csv":
            with file.open(newline="", encoding="utf-8") as handle:
                reader = csv.DictReader(handle)
                if not {"prediction_id", "label"} <= set(reader.fieldnames or []):
                    raise Pr2prodError(
                        f"{file} has no prediction_id and label columns",
                        hint="its first line must name them: prediction_id,label",
                    )
                for line, row in enumerate(reader, start=2):
                    yield f"{file}:{line}", row["prediction_id"], row["label"]
            continue
        for line, text in enumerate(file.read_text(encoding="utf-8").splitlines(), start=1):
            if not text.strip():
                continue
            try:
                row = json.loads(text)
            except json.JSONDecodeError:
                row = None
            if not isinstance(row, dict):
                yield f"{file}:{line}", NOT_JSON, None
                continue
            yield f"{file}:{line}", row.get("prediction_id"), row.get("label")
