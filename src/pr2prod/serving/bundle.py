"""What a served model carries: the fitted pipeline and everything needed to check it.

The BentoML model directory holds the DVC pipeline's model.joblib, the same pipeline
compiled to ONNX (model.onnx) when it proved equal to it, its model card (saying which of
the two the service runs, and why),
the schema it was trained on, the serving policy, a summary of its test metrics and a
few golden rows (synthetic inputs, never a real record, with the probabilities, or for a
numeric target the values, the pipeline's model gave them when the bento was made), so a
served model can prove at start-up that it is the model the pipeline evaluated.

This side only reads a bundle; pr2prod.release.bundle writes it (and never ships).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import joblib
import numpy as np

from pr2prod.schema import FeatureSchema, parse_schema
from pr2prod.serving.inference import (
    ONNXRUNTIME,
    SCIKIT_LEARN,
    CompiledRunner,
    PipelineRunner,
    Runner,
)
from pr2prod.serving.policy import ServingPolicy
from pr2prod.serving.reference import REFERENCE_FILE, Reference, ValueReference

MODEL_FILE = "model.joblib"
GRAPH_FILE = "model.onnx"  # only when the service runs the compiled model
CARD_FILE = "model.json"
SCHEMA_FILE = "schema.yaml"
POLICY_FILE = "serving.json"
METRICS_FILE = "metrics.json"
GOLDEN_FILE = "golden.json"
# SHA-256 of every other file, written last: a file changed after the bento was built
# (in the store, the image or a volume) is refused before anything is unpickled.
MANIFEST_FILE = "manifest.json"
BUNDLE_FILES = (MODEL_FILE, CARD_FILE, SCHEMA_FILE, POLICY_FILE, METRICS_FILE, GOLDEN_FILE)
TOLERANCE = 1e-5  # probabilities over HTTP keep six decimals
# The golden rows' answers: probabilities (rows x classes) or, for a numeric target, values.
GOLDEN_PROBABILITIES = "probabilities"
GOLDEN_VALUES = "values"


@dataclass(frozen=True)
class ModelBundle:
    path: Path
    schema: FeatureSchema
    policy: ServingPolicy
    card: dict[str, Any]
    metrics: dict[str, Any]
    golden: dict[str, Any]

    @classmethod
    def load(cls, path: Path) -> ModelBundle:
        check_manifest(path)
        return cls(
            path=path,
            schema=parse_schema((path / SCHEMA_FILE).read_text(), path / SCHEMA_FILE),
            policy=ServingPolicy(**json.loads((path / POLICY_FILE).read_text())),
            card=json.loads((path / CARD_FILE).read_text()),
            metrics=json.loads((path / METRICS_FILE).read_text()),
            golden=json.loads((path / GOLDEN_FILE).read_text()),
        )

    @property
    def inference(self) -> dict[str, Any]:
        """How the model runs (the card's `inference`; bundles made before it: scikit-learn)."""
        return self.card.get("inference", {"runtime": SCIKIT_LEARN})

    def load_model(self) -> Any:
        """The scikit-learn pipeline as trained."""
        return joblib.load(self.path / MODEL_FILE)

    def load_runner(self) -> Runner:
        """What serves: the compiled graph if `make bento` stored one, else the pipeline."""
        if self.inference["runtime"] == ONNXRUNTIME:
            graph = (self.path / GRAPH_FILE).read_bytes()
            return CompiledRunner(graph, self.inference["graph_classes"], self.schema)
        return PipelineRunner(self.load_model(), self.schema)

    def golden_rows_match(self, model: Runner) -> tuple[bool, float]:
        """Do the golden rows get the answers recorded for them? (and the worst gap)"""
        records = self.golden["records"]
        if self.schema.target.is_numeric:
            return self.policy.values_agree(self.golden[GOLDEN_VALUES], model.values(records))
        expected = np.asarray(self.golden[GOLDEN_PROBABILITIES])
        gap = float(np.abs(model.probabilities(records) - expected).max())
        return gap <= TOLERANCE, gap

    def value_reference(self) -> ValueReference:
        """A regressor's test-set predictions in value buckets: its histogram's bounds."""
        predictions = Reference.load(self.path / REFERENCE_FILE).predictions
        if not isinstance(predictions, ValueReference):
            raise BundleError(f"{self.path / REFERENCE_FILE} holds no predicted-value buckets")
        return predictions


def served_answers_match(
    golden: dict[str, Any], answers: list[dict[str, Any]], classes: list[str], policy: ServingPolicy
) -> tuple[bool, float]:
    """Do /predict's answers (its JSON) for the golden records match those recorded? (and
    the worst gap: a probability, or a value in the target's unit)"""
    if GOLDEN_VALUES in golden:
        return policy.values_agree(golden[GOLDEN_VALUES], [a["predicted"] for a in answers])
    served = np.array([[answer["probabilities"][label] for label in classes] for answer in answers])
    expected = np.asarray(golden[GOLDEN_PROBABILITIES])
    if served.shape != expected.shape:
        return False, float("inf")
    gap = float(np.abs(served - expected).max())
    return gap <= TOLERANCE, gap


def file_sha256(file: Path) -> str:
    digest = hashlib.sha256()
    with file.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_manifest(path: Path) -> None:
    """Raise unless every file of the bundle has the digest its manifest records.

    Every file the bundle writes is listed and must be there unchanged (BentoML's own
    model.yaml, written after the bundle, is not ours to check and is never unpickled).
    """
    manifest_file = path / MANIFEST_FILE
    if not manifest_file.is_file():
        raise BundleError(f"{path} has no {MANIFEST_FILE}: it was not written by `make bento`")
    listed = json.loads(manifest_file.read_text())
    unlisted = sorted(set(BUNDLE_FILES) - set(listed))
    if unlisted:
        raise BundleError(f"the manifest of {path} does not list {', '.join(unlisted)}")
    for name, digest in listed.items():
        file = path / name
        if not file.is_file() or file_sha256(file) != digest:
            raise BundleError(f"{file} was changed after the bento was built")


class BundleError(Exception):
    """A model bundle that is not the one `make bento` wrote: never load it."""
