"""Compiling the trained pipeline for the service, proven equal to it (`make bento`).

The pipeline (preprocessing and estimator) is converted to ONNX and run with ONNX Runtime
exactly as the service would run it, on every row of the test split and on the golden
rows. A classifier is kept only when it predicts the same class for every row and every
class's probability within `compile.tolerance` of scikit-learn's; a regressor (numeric
target) only when every value is within the serving policy's value tolerance
(`serving.value_rtol`, `serving.value_atol`), the one its golden rows are held to.
Otherwise, or when the converter cannot handle the estimator, or with
`compile.enabled: false`, the service runs the scikit-learn pipeline as trained; the model
card (`GET /model`) says which runs and why.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import version
from typing import Any

import numpy as np

from pr2prod.schema import FeatureSchema
from pr2prod.serving.bundle import GRAPH_FILE
from pr2prod.serving.inference import ONNXRUNTIME, SCIKIT_LEARN, CompiledRunner, PipelineRunner
from pr2prod.serving.policy import ServingPolicy
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
    policy: ServingPolicy | None = None,
) -> CompiledModel:
    """The pipeline compiled and checked on `records`, or the reason it is not used
    (`policy`: the value tolerance a regressor is held to; default: params.yaml's default)."""
    policy = policy or ServingPolicy()
    if not settings.enabled:
        return _fallback("compile.enabled is false in params.yaml")
    try:
        # Imported here: the converter is slow to import and only this step needs it.
        from pr2prod.release.onnx_conversion import convert_pipeline

        graph = convert_pipeline(model, schema).SerializeToString()
    except Exception as error:  # any failure of the converter means: serve scikit-learn
        return _fallback(f"the ONNX converter cannot handle this pipeline: {_quoted(error)}")
    numeric = schema.target.is_numeric
    graph_classes = [] if numeric else [str(label) for label in model.classes_]
    try:
        compiled = CompiledRunner(graph, graph_classes, schema)
        actual = compiled.values(records) if numeric else compiled.probabilities(records)
    except Exception as error:  # a graph ONNX Runtime cannot load or run
        return _fallback(f"ONNX Runtime cannot run the converted graph: {_quoted(error)}")
    pipeline = PipelineRunner(model, schema)
    if numeric:
        parity = value_parity_report(pipeline.values(records), actual, policy)
        if not parity["equal"]:
            return _fallback(
                f"the compiled model differs from scikit-learn on {parity['rows']} rows: "
                f"{parity['values_differing']} values differ by more than the tolerance "
                f"(serving.value_atol {policy.value_atol:g} + value_rtol {policy.value_rtol:g} "
                f"x |value|), the largest by {parity['max_value_gap']:.3g}",
                parity,
            )
        return CompiledModel(_compiled_inference(graph_classes, parity), graph)
    parity = parity_report(pipeline.probabilities(records), actual, settings.tolerance)
    if not parity["equal"]:
        return _fallback(
            f"the compiled model differs from scikit-learn on {parity['rows']} rows: "
            f"{parity['classes_differing']} predicted classes differ, largest probability "
            f"gap {parity['max_probability_gap']:.3g} (tolerance {settings.tolerance:g})",
            parity,
        )
    return CompiledModel(_compiled_inference(graph_classes, parity), graph)


def _compiled_inference(graph_classes: list[str], parity: dict[str, Any]) -> dict[str, Any]:
    return {
        "runtime": ONNXRUNTIME,
        "graph_file": GRAPH_FILE,
        "graph_classes": graph_classes,
        "converter": f"skl2onnx {version('skl2onnx')}",
        "parity": parity,
    }


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


def value_parity_report(
    expected: np.ndarray, actual: np.ndarray, policy: ServingPolicy
) -> dict[str, Any]:
    """How far two regressors' values for the same rows are apart."""
    equal, gap = policy.values_agree(expected, actual)
    allowed = policy.value_atol + policy.value_rtol * np.abs(expected)
    differing = int((np.abs(actual - expected) > allowed).sum()) if not equal else 0
    return {
        "rows": len(expected),
        "values_differing": differing,
        "max_value_gap": gap,
        "tolerance": {"relative": policy.value_rtol, "absolute": policy.value_atol},
        "equal": equal,
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
        if "max_value_gap" in parity:
            return (
                f"the service runs the model compiled to ONNX (ONNX Runtime): equal to "
                f"scikit-learn on {parity['rows']} rows, largest value gap "
                f"{parity['max_value_gap']:.2g}"
            )
        return (
            f"the service runs the model compiled to ONNX (ONNX Runtime): equal to "
            f"scikit-learn on {parity['rows']} rows, largest probability gap "
            f"{parity['max_probability_gap']:.2g}"
        )
    return f"the service runs the scikit-learn pipeline: {inference['reason']}"
