"""The serving policy: how the service treats requests (params.yaml, `serving:`).

It lives with the service, which ships, rather than with the settings reader, which does
not: the pipeline writes the policy into the model bundle and the service reads it back.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


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
