"""`make bento` and `make image`: package the DVC pipeline's model for serving.

Versions are content hashes, so rebuilding an unchanged model is a no-op and any
change to the model (or to the service code) gives a new version.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import bentoml

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.schema import FeatureSchema
from pr2prod.serving.bundle import write_bundle
from pr2prod.settings import Settings

MODEL_NAME = "pr2prod-model"
BENTO_NAME = "pr2prod"
BENTOFILE = Path("bentofile.yaml")
BUILD_CONTEXT = Path("src")
SERVICE_SOURCES = Path("src/pr2prod")


@dataclass(frozen=True)
class BentoInfo:
    model_tag: str
    bento_tag: str
    model_created: bool
    bento_created: bool


def expected_tags() -> tuple[str, str]:
    """(model tag, bento tag) for the model and service code in the workspace now."""
    if not paths.MODEL.is_file():
        raise Pr2prodError(f"{paths.MODEL} not found", hint="train the model first: `make repro`")
    model_tag = f"{MODEL_NAME}:{_digest([paths.MODEL])}"
    # Every source in the build context: the service, and any module a release ships.
    sources = [*sorted(BUILD_CONTEXT.rglob("*.py")), BENTOFILE]
    return model_tag, f"{BENTO_NAME}:{_digest(sources, salt=model_tag)}"


def build_bento(settings: Settings, schema: FeatureSchema) -> BentoInfo:
    """Store the model (if new) and build the bento that serves exactly that model."""
    model_tag, bento_tag = expected_tags()
    model_created = _ensure_model(model_tag, settings, schema)
    bento_created = False
    if not _exists(bentoml.bentos.get, bento_tag):
        bentoml.bentos.build_bentofile(
            str(BENTOFILE.resolve()),
            build_ctx=str(BUILD_CONTEXT.resolve()),
            version=bento_tag.split(":")[1],
            args={"model_tag": model_tag},
            labels={"model_tag": model_tag},
        )
        bento_created = True
    return BentoInfo(model_tag, bento_tag, model_created, bento_created)


def built_bento_tag() -> str:
    """The bento for the workspace's model, which must have been built already."""
    _, bento_tag = expected_tags()
    if not _exists(bentoml.bentos.get, bento_tag):
        raise Pr2prodError(
            f"the bento {bento_tag} for the current model is not built", hint="run `make bento`"
        )
    return bento_tag


def _ensure_model(tag: str, settings: Settings, schema: FeatureSchema) -> bool:
    if _exists(bentoml.models.get, tag):
        return False
    with bentoml.models.create(tag, labels={"source": "dvc"}) as model:
        write_bundle(
            Path(model.path),
            model_file=paths.MODEL,
            card_file=paths.MODEL_CARD,
            schema_file=paths.SCHEMA,
            metrics_file=paths.METRICS,
            policy=settings.serving,
            test_file=paths.TEST_SPLIT,
            predictions_file=paths.PREDICTIONS,
            schema=schema,
        )
    return True


def _exists(getter, tag: str) -> bool:
    try:
        getter(tag)
    except bentoml.exceptions.NotFound:
        return False
    return True


def _digest(files: list[Path], salt: str = "") -> str:
    digest = hashlib.sha256(salt.encode())
    for file in files:
        digest.update(file.as_posix().encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()[:16]
