"""params.yaml: every knob a user turns, read into typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pr2prod.errors import Pr2prodError


@dataclass(frozen=True)
class SplitParams:
    test_size: float


@dataclass(frozen=True)
class TrainParams:
    estimator: str
    hyperparameters: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Params:
    seed: int
    data_file: Path
    split: SplitParams
    train: TrainParams


def load_params(path: Path) -> Params:
    if not path.is_file():
        raise Pr2prodError(f"{path} not found", hint="run from the repository root")
    raw = yaml.safe_load(path.read_text()) or {}
    try:
        test_size = float(raw["split"]["test_size"])
        params = Params(
            seed=int(raw["seed"]),
            data_file=Path(raw["data"]["file"]),
            split=SplitParams(test_size=test_size),
            train=TrainParams(
                estimator=str(raw["train"]["estimator"]),
                hyperparameters=dict(raw["train"].get("hyperparameters") or {}),
            ),
        )
    except (KeyError, TypeError) as error:
        raise Pr2prodError(
            f"{path}: missing or malformed setting {error}",
            hint="compare with the commented params.yaml in the template",
        ) from error
    if not 0 < test_size < 1:
        raise Pr2prodError(f"{path}: split.test_size must be between 0 and 1, not {test_size}")
    return params
