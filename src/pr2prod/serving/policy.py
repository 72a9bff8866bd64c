"""The serving policy: how the service treats requests (params.yaml, `serving:`).

It lives with the service, which ships, rather than with the settings reader, which does
not: the pipeline writes the policy into the model bundle and the service reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np


class PolicyError(ValueError):
    """A policy value that breaks its rule; `key` names the setting (params.yaml reports it)."""

    def __init__(self, key: str, problem: str) -> None:
        super().__init__(f"{key} {problem}")
        self.key = key
        self.problem = problem


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
    # A numeric target's answers: a served value equals the one recorded when the bento was
    # made (golden rows) or scikit-learn's (the compiled model) within
    # value_atol + value_rtol x |value|. Another model misses by far more; double-precision
    # runtimes agree to about 1e-12.
    value_rtol: float = 1.0e-6
    value_atol: float = 1.0e-9  # in the target's unit: matters only for values near zero

    def __post_init__(self) -> None:
        for name in ("value_rtol", "value_atol"):
            value = getattr(self, name)
            if not 0 <= value < 1:
                raise PolicyError(name, f"must be at least 0 and below 1, not {value}")

    def values_agree(self, expected: np.ndarray, actual: np.ndarray) -> tuple[bool, float]:
        """Are two models' values for the same rows equal within the tolerance? (and the
        largest difference, in the target's unit)"""
        expected, actual = np.asarray(expected, dtype=float), np.asarray(actual, dtype=float)
        if expected.shape != actual.shape:
            return False, float("inf")
        if not expected.size:
            return True, 0.0
        gaps = np.abs(actual - expected)
        allowed = self.value_atol + self.value_rtol * np.abs(expected)
        return bool((gaps <= allowed).all()), float(gaps.max())
