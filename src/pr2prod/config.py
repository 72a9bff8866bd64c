"""params.yaml: every knob a user turns, read into typed objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

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
class ReportParams:
    bootstrap_resamples: int = 1000
    confidence: float = 0.95
    drift_threshold: float = 0.2  # population stability index above which a feature is flagged


@dataclass(frozen=True)
class GateRule:
    """A quality-gate rule for one metric.

    `limit` is a floor when higher is better and a ceiling when lower is better;
    `max_regression` is the largest allowed worsening against the base revision.
    """

    metric: str
    higher_is_better: bool
    limit: float | None = None
    max_regression: float | None = None


@dataclass(frozen=True)
class ServingPolicy:
    """How the service treats requests (params.yaml, `serving:`)."""

    out_of_range: Literal["reject", "warn"] = "reject"  # numbers outside the schema's range
    unseen_category: Literal["reject", "warn"] = "reject"  # categories the schema lacks
    max_records: int = 1000  # records in one request
    max_body_bytes: int = 1_048_576  # larger bodies get 413 before they are parsed
    max_batch_size: int = 64  # adaptive batching: most records in one model call
    max_latency_ms: int = 1000  # adaptive batching: deadline before a request is shed (503)
    workers: int = 1


@dataclass(frozen=True)
class Params:
    seed: int
    data_file: Path
    split: SplitParams
    train: TrainParams
    report: ReportParams = field(default_factory=ReportParams)
    gate: tuple[GateRule, ...] = ()
    serving: ServingPolicy = field(default_factory=ServingPolicy)


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
            report=ReportParams(**(raw.get("report") or {})),
            serving=_serving_policy(raw.get("serving") or {}, path),
            gate=tuple(
                _gate_rule(name, spec, path) for name, spec in (raw.get("gate") or {}).items()
            ),
        )
    except (KeyError, TypeError, AttributeError) as error:
        raise Pr2prodError(
            f"{path}: missing or malformed setting {error}",
            hint="compare with the commented params.yaml in the template",
        ) from error
    if not 0 < test_size < 1:
        raise Pr2prodError(f"{path}: split.test_size must be between 0 and 1, not {test_size}")
    return params


def _gate_rule(metric: str, spec: dict[str, Any], path: Path) -> GateRule:
    where = f"{path}: gate.{metric}"
    unknown = set(spec) - {"direction", "min", "max", "max_regression"}
    if unknown:
        raise Pr2prodError(f"{where}: unknown keys {sorted(unknown)}")
    direction = spec.get("direction")
    if direction not in ("higher", "lower"):
        raise Pr2prodError(f"{where}: direction must be 'higher' or 'lower', not {direction!r}")
    higher = direction == "higher"
    wrong_limit = "max" if higher else "min"
    if wrong_limit in spec:
        raise Pr2prodError(
            f"{where}: when {direction} is better the limit is "
            f"'{'min' if higher else 'max'}', not '{wrong_limit}'"
        )
    limit = spec.get("min" if higher else "max")
    regression = spec.get("max_regression")
    if regression is not None and float(regression) < 0:
        raise Pr2prodError(f"{where}: max_regression must be zero or more")
    return GateRule(
        metric=metric,
        higher_is_better=higher,
        limit=None if limit is None else float(limit),
        max_regression=None if regression is None else float(regression),
    )


def _serving_policy(spec: dict[str, Any], path: Path) -> ServingPolicy:
    policy = ServingPolicy(**spec)
    for name in ("out_of_range", "unseen_category"):
        if getattr(policy, name) not in ("reject", "warn"):
            raise Pr2prodError(f"{path}: serving.{name} must be 'reject' or 'warn'")
    return policy
