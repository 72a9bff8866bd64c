"""The canary's knobs (params.yaml, `canary:`), read into typed settings."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from pr2prod.errors import Pr2prodError


@dataclass(frozen=True)
class Thresholds:
    """When a canary window fails. Relative to stable over the same window, and absolute."""

    error_rate_margin: float = 0.01  # canary 5xx share <= stable's + this
    error_rate_max: float = 0.05  # ... and never above this
    latency_p99_ratio: float = 2.0  # canary p99 <= this x stable's p99
    latency_p99_max_ms: float = 500.0  # ... and never above this
    latency_p50_ratio: float = 2.0  # canary median <= this x stable's median
    model_time_ratio: float = 3.0  # canary model time per call (median) <= this x stable's
    prediction_divergence_max: float = 0.1  # Jensen-Shannon divergence (base 2) of predictions


@dataclass(frozen=True)
class CanarySettings:
    steps: tuple[int, ...] = (10, 25, 50, 100)  # canary share of traffic, percent
    window_seconds: float = 20.0  # analysis window at each step
    min_requests: int = 50  # per version and window; fewer is inconclusive
    max_failures: int = 1  # failed windows before rolling back
    max_inconclusive: int = 3  # inconclusive windows in a row before rolling back
    progress_deadline_seconds: float = 600.0  # a rollout not finished by then rolls back
    synthetic_load_rps: float = 0.0  # >0: drive load from the test set when traffic is low
    retry_on_stable: bool = True  # the local router retries a failed canary request on stable
    drain_seconds: float = 2.0  # traffic off a version before it is stopped
    readiness_timeout_seconds: float = 120.0  # a canary not ready by then is rolled back
    thresholds: Thresholds = field(default_factory=Thresholds)

    @classmethod
    def from_params(cls, path: Path) -> CanarySettings:
        raw = (yaml.safe_load(path.read_text()) or {}).get("canary") or {}
        return cls.from_dict(raw, where=f"{path}: canary")

    @classmethod
    def from_dict(cls, raw: dict[str, Any], where: str = "canary") -> CanarySettings:
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise Pr2prodError(f"{where}: unknown keys {sorted(unknown)}")
        values = dict(raw)
        thresholds = values.pop("thresholds", None) or {}
        unknown = set(thresholds) - {f.name for f in fields(Thresholds)}
        if unknown:
            raise Pr2prodError(f"{where}.thresholds: unknown keys {sorted(unknown)}")
        if "steps" in values:
            steps = tuple(int(step) for step in values["steps"])
            if not steps or steps[-1] != 100 or list(steps) != sorted(set(steps)) or steps[0] <= 0:
                raise Pr2prodError(
                    f"{where}.steps must rise strictly and end at 100, e.g. [10, 25, 50, 100]"
                )
            values["steps"] = steps
        return cls(**values, thresholds=Thresholds(**thresholds))
