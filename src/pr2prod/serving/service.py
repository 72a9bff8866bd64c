"""The BentoML service: `predict` for one or many records, plus health and model metadata.

It serves a classifier (each record's class and every class's probability) or, when
schema.yaml's target is numeric, a regressor (each record's predicted value).

The model is pinned by tag (`--arg model_tag=...`, recorded in the bento by `make bento`);
its request model, serving policy and golden rows come with it, so the service needs no
file from the repository.
"""

from __future__ import annotations

import gc
import logging
from json import JSONDecodeError
from pathlib import Path
from typing import Annotated

import bentoml
import numpy as np
from pydantic import BaseModel, Field
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from pr2prod import environment
from pr2prod.serving.bundle import ModelBundle
from pr2prod.serving.contract import (
    Prediction,
    ValuePrediction,
    answer_model,
    field_name,
    policy_warnings,
    record_model,
)
from pr2prod.serving.feedback import (
    ERROR_SUMS,
    FEEDBACK_ITEMS,
    FeedbackLog,
    FeedbackRefused,
    Judged,
    error_sums,
    parse_feedback,
    prediction_id,
    value_prediction_id,
)
from pr2prod.serving.guards import (
    KnownPathsOnly,
    RequestGuard,
    quiet_client_errors,
    served_paths,
)
from pr2prod.serving.telemetry import (
    LATENCY_BUCKETS,
    PredictionMetrics,
    feature_statistics,
    predicted_value_histogram,
)

logger = logging.getLogger("pr2prod.serving")


class ServiceArguments(BaseModel):
    model_tag: str | None = None  # e.g. pr2prod-model:3f2a...; falls back to PR2PROD_MODEL_TAG


_arguments = bentoml.use_arguments(ServiceArguments)
MODEL_TAG = _arguments.model_tag or environment.PR2PROD_MODEL_TAG.value()
if not MODEL_TAG:
    raise RuntimeError(
        "no model to serve: build the bento with `make bento`, or pass "
        "--arg model_tag=<tag> (or set PR2PROD_MODEL_TAG) when serving from source"
    )
MODEL = bentoml.models.BentoModel(MODEL_TAG)
BUNDLE = ModelBundle.load(Path(MODEL.resolve().path))
POLICY = BUNDLE.policy
Record = record_model(BUNDLE.schema, POLICY)
Records = Annotated[list[Record], Field(min_length=1, max_length=POLICY.max_records)]
Answer = answer_model(BUNDLE.schema)
NUMERIC_TARGET = BUNDLE.schema.target.is_numeric
quiet_client_errors()


@bentoml.service(
    name="pr2prod",
    workers=POLICY.workers,
    traffic={"timeout": 30},
    metrics={"duration": {"buckets": list(LATENCY_BUCKETS)}},
)
class Classifier:
    model_ref = MODEL

    def __init__(self) -> None:
        self.model = BUNDLE.load_runner()
        self.version = str(MODEL.resolve().tag.version)
        self.classes = list(BUNDLE.schema.target.classes)
        self.metrics = PredictionMetrics.create()
        self.inputs = feature_statistics(BUNDLE.path, self.metrics, self.version)
        # Each metric's labelled series, looked up once rather than on every record.
        self.class_counts = {
            label: self.metrics.predicted_classes.labels(label, self.version)
            for label in self.classes
        }
        self.probability_histograms = [
            self.metrics.probabilities.labels(label, self.version) for label in self.classes
        ]
        self.model_seconds = self.metrics.model_seconds.labels(self.version)
        if NUMERIC_TARGET:
            bounds = BUNDLE.value_reference().value_bounds
            self.value_histogram = predicted_value_histogram(bounds).labels(self.version)
        matches, gap = BUNDLE.golden_rows_match(self.model)
        self.ready = matches
        # The worker's heap (BentoML, pandas, scikit-learn, hundreds of trees) makes a full
        # garbage collection take 60-240 ms, stalling every request in flight; objects made
        # at start-up live for good, so keep them out of collections (bench-serve: p99 halved).
        gc.collect()
        gc.freeze()
        if matches:
            logger.info(
                "model %s loaded, run by %s; golden rows match (largest gap %.2g)",
                MODEL_TAG,
                self.model.runtime,
                gap,
            )
        else:
            logger.error(
                "model %s, run by %s, gives golden-row answers %.3g away from what "
                "was recorded: not ready (a changed model file, or another scikit-learn or "
                "ONNX Runtime version in this environment?)",
                MODEL_TAG,
                self.model.runtime,
                gap,
            )

    def __is_ready__(self) -> bool:
        return self.ready

    @bentoml.api(
        batchable=True,
        max_batch_size=POLICY.max_batch_size,
        max_latency_ms=POLICY.max_latency_ms,
    )
    def predict(self, records: Records) -> list[Answer]:
        """Predict each record's class with every class's probability (a classifier), or
        its value (a numeric target)."""
        rows = [record.model_dump(by_alias=True) for record in records]
        self._count_policy_warnings(rows)
        if self.inputs is not None:
            self.inputs.observe(rows)
        if NUMERIC_TARGET:
            with self.model_seconds.time():
                values = self.model.values(rows)
            return [self._value_prediction(value) for value in values.tolist()]
        with self.model_seconds.time():
            probabilities = self.model.probabilities(rows)
        return [self._prediction(row) for row in probabilities]

    def _value_prediction(self, value: float) -> ValuePrediction:
        self.value_histogram.observe(value)
        return ValuePrediction(
            predicted=value,
            model_version=self.version,
            prediction_id=value_prediction_id(self.version, value),
        )

    def _prediction(self, row: np.ndarray) -> Prediction:
        index = int(row.argmax())
        predicted = self.classes[index]
        self.class_counts[predicted].inc()
        probabilities = row.tolist()  # Python floats at once, not one numpy scalar at a time
        for histogram, probability in zip(self.probability_histograms, probabilities, strict=True):
            histogram.observe(probability)
        return Prediction(
            predicted=predicted,
            probabilities={
                label: round(p, 6) for label, p in zip(self.classes, probabilities, strict=True)
            },
            model_version=self.version,
            prediction_id=prediction_id(self.version, index),
        )

    def _count_policy_warnings(self, rows: list[dict]) -> None:
        if POLICY.out_of_range == "reject" and POLICY.unseen_category == "reject":
            return  # nothing out of bounds gets this far
        for row in rows:
            for problem in policy_warnings(row, BUNDLE.schema, quote_values=False):
                self.metrics.input_warnings.labels(problem.split(":")[0], self.version).inc()
                logger.warning("accepted with a warning: %s", problem)


def model_metadata(_: Request) -> JSONResponse:
    """GET /model: which model this is, where it came from and how it scored."""
    return JSONResponse(
        {
            "model_tag": MODEL_TAG,
            "model_version": str(MODEL.resolve().tag.version),
            "card": BUNDLE.card,
            "test_metrics": BUNDLE.metrics,
            "features": {f.name: field_name(f.name) for f in BUNDLE.schema.features},
            "classes": list(BUNDLE.schema.target.classes),
            **_numeric_target(),
            "policy": POLICY.__dict__,
            # Synthetic inputs (no real record) with the answers recorded for them when the
            # bento was made: lets a deployer check this version. No data row is served here.
            "golden": BUNDLE.golden,
        }
    )


def _numeric_target() -> dict:
    """What GET /model adds for a numeric target: its unit and the histogram's bounds."""
    if not NUMERIC_TARGET:
        return {}
    return {
        "target": {"name": BUNDLE.schema.target.name, "unit": BUNDLE.schema.target.unit},
        "value_bounds": list(BUNDLE.value_reference().value_bounds),
    }


class FeedbackCounts:
    """This process's feedback per model version: a confusion matrix, or a regressor's
    error sums."""

    def __init__(self) -> None:
        self.version = str(MODEL.resolve().tag.version)
        self.classes = list(BUNDLE.schema.target.classes)
        self.metrics: PredictionMetrics | None = None
        self.versions: set[str] = {self.version}

    def count(self, judged: list[Judged]) -> None:
        if self.metrics is None:  # made in the worker, after Prometheus's set-up
            self.metrics = PredictionMetrics.create()
            for predicted in self.classes:  # every series of this version from zero
                for actual in self.classes:
                    self.metrics.feedback.labels(predicted, actual, self.version).inc(0)
            if NUMERIC_TARGET:
                for name in ERROR_SUMS:
                    self.metrics.feedback_errors.labels(name, self.version).inc(0)
        self.versions.update(item.model_version for item in judged)
        if NUMERIC_TARGET:
            for version in {item.model_version for item in judged}:
                mine = [item for item in judged if item.model_version == version]
                for name, total in error_sums(mine).items():
                    self.metrics.feedback_errors.labels(name, version).inc(total)
            return
        for item in judged:
            self.metrics.feedback.labels(item.predicted, item.actual, item.model_version).inc()


FEEDBACK = FeedbackCounts()
_log_folder = environment.PR2PROD_FEEDBACK_LOG.value()
FEEDBACK_LOG = FeedbackLog(Path(_log_folder)) if _log_folder else None


async def feedback(request: Request) -> JSONResponse:
    """POST /feedback: true labels for earlier predictions, by prediction id."""
    try:
        body = await request.json()
    except (JSONDecodeError, UnicodeDecodeError):
        return JSONResponse({"error": "the body is not JSON"}, status_code=400)
    try:
        judged = parse_feedback(body, FEEDBACK.classes, POLICY.max_records, FEEDBACK.versions)
    except FeedbackRefused as refused:
        return JSONResponse({"error": str(refused)}, status_code=refused.status)
    if FEEDBACK_LOG is not None:
        try:
            FEEDBACK_LOG.append(body[FEEDBACK_ITEMS])
        except OSError as error:
            logger.error("could not store feedback in %s: %s", FEEDBACK_LOG.file, error)
            message = "the feedback could not be stored; nothing was counted: send it again"
            return JSONResponse({"error": message}, status_code=503)
    FEEDBACK.count(judged)
    return JSONResponse({"accepted": len(judged)})


Classifier.mount_asgi_app(
    Starlette(
        routes=[
            Route("/model", model_metadata),
            Route("/feedback", feedback, methods=["POST"]),
        ]
    ),
    path="/",
)
Classifier.add_asgi_middleware(RequestGuard, max_bytes=POLICY.max_body_bytes)


class _KnownPathsService(type(Classifier)):
    """The service, with its ASGI app wrapped in KnownPathsOnly.

    BentoML puts its request-metrics middleware outside every middleware a service adds,
    so only a wrapper around the app it builds can keep unknown paths away from it. The
    worker builds the app through `to_asgi`; this is the one place to wrap it.
    """

    __slots__ = ()  # the same layout as BentoML's service class, so the instance can switch

    def to_asgi(self, is_main: bool = True) -> KnownPathsOnly:
        app = super().to_asgi(is_main=is_main)
        return KnownPathsOnly(app, served_paths(app.routes), internal={"/metrics"})


Classifier.__class__ = _KnownPathsService
