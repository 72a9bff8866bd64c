"""Writing a model bundle from the DVC pipeline's outputs (pr2prod.serving.bundle reads it).

Writing lives here, outside the service's code: the golden rows it stores are made from
the training split (pr2prod.release.golden), which the service never reads.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from pr2prod.release.compile import CompiledModel
from pr2prod.serving.bundle import (
    CARD_FILE,
    GOLDEN_FILE,
    GRAPH_FILE,
    MANIFEST_FILE,
    METRICS_FILE,
    MODEL_FILE,
    POLICY_FILE,
    SCHEMA_FILE,
    file_sha256,
)
from pr2prod.serving.policy import ServingPolicy
from pr2prod.serving.reference import REFERENCE_FILE, Reference


def write_bundle(
    directory: Path,
    model_file: Path,
    card_file: Path,
    schema_file: Path,
    metrics_file: Path,
    policy: ServingPolicy,
    golden: dict,
    reference: Reference,
    compiled: CompiledModel | None = None,
) -> None:
    """Fill a (new, empty) model directory from the DVC pipeline's outputs.

    With `compiled`, the card is the training card plus `inference` (which runtime serves,
    and why) and the graph is stored if it serves; without, the pipeline serves.
    """
    for source, name in (
        (model_file, MODEL_FILE),
        (schema_file, SCHEMA_FILE),
        (metrics_file, METRICS_FILE),
    ):
        (directory / name).write_bytes(source.read_bytes())
    (directory / POLICY_FILE).write_text(json.dumps(dataclasses.asdict(policy), indent=2))
    (directory / GOLDEN_FILE).write_text(json.dumps(golden, indent=2))
    (directory / REFERENCE_FILE).write_text(reference.to_json())
    card = json.loads(card_file.read_text())
    if compiled is not None:
        card["inference"] = compiled.inference
        if compiled.graph is not None:
            (directory / GRAPH_FILE).write_bytes(compiled.graph)
    (directory / CARD_FILE).write_text(json.dumps(card, indent=2))
    write_manifest(directory)


def write_manifest(directory: Path) -> None:
    """Record every file's digest (pr2prod.serving.bundle checks them before loading)."""
    digests = {
        file.name: file_sha256(file)
        for file in sorted(directory.iterdir())
        if file.is_file() and file.name != MANIFEST_FILE
    }
    (directory / MANIFEST_FILE).write_text(json.dumps(digests, indent=2))
