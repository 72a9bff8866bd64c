"""Writing a model bundle from the DVC pipeline's outputs (pr2prod.serving.bundle reads it).

Writing lives here, outside the service's code: the golden rows it stores are made from
the training split (pr2prod.release.golden), which the service never reads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pr2prod.serving.bundle import (
    CARD_FILE,
    GOLDEN_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_FILE,
    POLICY_FILE,
    SCHEMA_FILE,
    file_sha256,
)
from pr2prod.serving.policy import ServingPolicy


def write_bundle(
    directory: Path,
    model_file: Path,
    card_file: Path,
    schema_file: Path,
    metrics_file: Path,
    policy: ServingPolicy,
    golden: dict,
) -> None:
    """Fill a (new, empty) model directory from the DVC pipeline's outputs."""
    for source, name in (
        (model_file, MODEL_FILE),
        (card_file, CARD_FILE),
        (schema_file, SCHEMA_FILE),
        (metrics_file, METRICS_FILE),
    ):
        (directory / name).write_bytes(source.read_bytes())
    (directory / POLICY_FILE).write_text(json.dumps(dataclasses.asdict(policy), indent=2))
    (directory / GOLDEN_FILE).write_text(json.dumps(golden, indent=2))
    write_manifest(directory)


def write_manifest(directory: Path) -> None:
    """Record every file's digest (pr2prod.serving.bundle checks them before loading)."""
    digests = {
        file.name: file_sha256(file)
        for file in sorted(directory.iterdir())
        if file.is_file() and file.name != MANIFEST_FILE
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(digests, indent=2))
