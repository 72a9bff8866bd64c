"""Where a model version's reference comes from: its own bundle in the local model store."""

from __future__ import annotations

from pathlib import Path

import bentoml

from pr2prod.errors import Pr2prodError
from pr2prod.release.bento import MODEL_NAME
from pr2prod.serving.reference import REFERENCE_FILE, Reference


def stored_reference(model_version: str) -> Reference:
    """The reference in the bundle of `pr2prod-model:<model_version>` (what `make bento` stored)."""
    tag = f"{MODEL_NAME}:{model_version}"
    try:
        model = bentoml.models.get(tag)
    except bentoml.exceptions.NotFound:
        raise Pr2prodError(
            f"the service runs model version {model_version}, but {tag} is not in the local "
            "model store, so its reference is unknown",
            hint="run `make bento` on the commit that trained that model, or pass "
            "--reference FILE (the reference.json of that model's bundle)",
        ) from None
    path = Path(model.path) / REFERENCE_FILE
    if not path.is_file():
        raise Pr2prodError(
            f"{tag} was stored before model bundles carried a drift reference",
            hint=f"`bentoml models delete {tag}`, then `make bento` stores it with one",
        )
    return Reference.load(path)
