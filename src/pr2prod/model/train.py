"""`pr2prod train`: fit the pipeline on the training split and save it with its model card."""

from __future__ import annotations

import json
from pathlib import Path

import joblib
import sklearn

from pr2prod.data.validation import load_typed
from pr2prod.model.estimator import make_estimator
from pr2prod.model.pipeline import build_pipeline, estimator_step
from pr2prod.schema import FeatureSchema
from pr2prod.settings import Settings


def train_model(
    settings: Settings, schema: FeatureSchema, train_path: Path, model_path: Path, card_path: Path
) -> int:
    """Fit and save the model; return the number of training rows."""
    frame = load_typed(train_path, schema)
    estimator = make_estimator(settings.train, settings.seed, schema.target.is_numeric)
    pipeline = build_pipeline(schema, estimator)
    pipeline.fit(frame[schema.feature_names], frame[schema.target.name])
    model_path.parent.mkdir(parents=True, exist_ok=True)
    joblib.dump(pipeline, model_path)
    # No timestamps here: the card is a DVC output and must be identical on every re-run.
    card = {
        "estimator": settings.train.estimator,
        "hyperparameters": pipeline.named_steps[estimator_step(schema)].get_params(),
        "seed": settings.seed,
        "features": schema.feature_names,
        "target": schema.target.name,
        "classes": [str(label) for label in getattr(pipeline, "classes_", [])],
        "training_rows": len(frame),
        "scikit_learn_version": sklearn.__version__,
    }
    card_path.write_text(json.dumps(card, indent=2, sort_keys=True, default=str) + "\n")
    return len(frame)
