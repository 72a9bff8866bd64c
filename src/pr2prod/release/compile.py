"""Compiling the trained pipeline for the service, proven equal to it (`make bento`).

The pipeline (preprocessing and estimator) is converted to ONNX and run with ONNX Runtime
exactly as the service would run it, on every row of the test split and on the golden
rows. It is kept only when it predicts the same class for every row and every class's
probability within `compile.tolerance` of scikit-learn's. Otherwise, or when the
converter cannot handle the estimator, or with `compile.enabled: false`, the service runs
the scikit-learn pipeline as trained; the model card (`GET /model`) says which runs and
why.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from pr2prod.schema import FeatureSchema
from pr2prod.serving.bundle import GRAPH_FILE
from pr2prod.serving.inference import ONNXRUNTIME, SCIKIT_LEARN, CompiledRunner, PipelineRunner
from pr2prod.settings import CompileSettings

MAX_REASON = 300  # characters of a converter's error quoted in the card


@dataclass(frozen=True)
class CompiledModel:
    """What the bundle gets: the card's `inference` entry, and the graph if it is used."""

    inference: dict[str, Any]
    graph: bytes | None


def compile_for_serving(
    model: Any,
    schema: FeatureSchema,
    records: list[dict[str, Any]],
    settings: CompileSettings,
) -> CompiledModel:
    """The pipeline compiled and checked on `records`, or the reason it is not used."""
    if not settings.enabled:
        return _fallback("compile.enabled is false in params.yaml")
    try:
        # Imported here: the converter is slow to import and only this step needs it.
        from pr2prod.release.onnx_conversion import convert_pipeline

        graph = convert_pipeline(model, schema).SerializeToString()
    except Exception as error:  # any failure of the converter means: serve scikit-learn
        return _fallback(f"the ONNX converter cannot handle this pipeline: {_quoted(error)}")
    graph_classes = [str(label) for label in model.classes_]
    try:
        compiled = CompiledRunner(graph, graph_classes, schema)
        actual = compiled.probabilities(records)
    except Exception as error:  # a graph ONNX Runtime cannot load or run
        return _fallback(f"ONNX Runtime cannot run the converted graph: {_quoted(error)}")
    expected = PipelineRunner(model, schema).probabilities(records)
    parity = parity_report(expected, actual, settings.tolerance)
    if not parity["equal"]:
        return _fallback(
            f"the compiled model differs from scikit-learn on {parity['rows']} rows: "
            f"{parity['classes_differing']} predicted classes differ, largest probability "
            f"gap {parity['max_probability_gap']:.3g} (tolerance {settings.tolerance:g})",
            parity,
        )
    inference = {
        "runtime": ONNXRUNTIME,
        "graph_file": GRAPH_FILE,
        "graph_classes": graph_classes,
        "converter": f"skl2onnx {version('skl2onnx')}",
        "parity": parity,
    }
    return CompiledModel(inference, graph)


def parity_report(expected: np.ndarray, actual: np.ndarray, tolerance: float) -> dict[str, Any]:
    """How far two models' probabilities (rows x classes, same order) are apart."""
    differing = int((expected.argmax(axis=1) != actual.argmax(axis=1)).sum())
    gap = float(np.abs(expected - actual).max()) if expected.size else 0.0
    return {
        "rows": len(expected),
        "classes_differing": differing,
        "max_probability_gap": gap,
        "tolerance": tolerance,
        "equal": differing == 0 and gap <= tolerance,
    }


def _fallback(reason: str, parity: dict[str, Any] | None = None) -> CompiledModel:
    inference: dict[str, Any] = {"runtime": SCIKIT_LEARN, "reason": reason}
    if parity is not None:
        inference["parity"] = parity
    return CompiledModel(inference, None)


def _quoted(error: Exception) -> str:
    text = " ".join(str(error).split()) or "no message"
    text = text if len(text) <= MAX_REASON else text[:MAX_REASON] + "..."
    return f"{type(error).__name__}: {text}"


def describe_inference(inference: dict[str, Any]) -> str:
    """One line on what runs the served model, for `make bento`'s output."""
    if inference["runtime"] == ONNXRUNTIME:
        parity = inference["parity"]
        return (
            f"the service runs the model compiled to ONNX (ONNX Runtime): equal to "
            f"scikit-learn on {parity['rows']} rows, largest probability gap "
            f"{parity['max_probability_gap']:.2g}"
        )
    return f"the service runs the scikit-learn pipeline: {inference['reason']}"
