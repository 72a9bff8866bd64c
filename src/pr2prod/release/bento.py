"""`make bento` and `make image`: package the DVC pipeline's model for serving.

Versions are content hashes, so rebuilding an unchanged model is a no-op. The bento's
version hashes exactly what it ships: the model, the files bentofile.yaml includes, the
runtime lock it installs and bentofile.yaml itself. Editing code that does not ship (the
pipeline, the report, the deploy controller) makes no new release.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

import bentoml
import yaml

from pr2prod import paths
from pr2prod.data.records import split_records
from pr2prod.errors import Pr2prodError
from pr2prod.model.artifact import load_pipeline_model
from pr2prod.release.bundle import write_bundle
from pr2prod.release.compile import compile_for_serving
from pr2prod.release.golden import golden_rows
from pr2prod.release.reference import build_reference
from pr2prod.schema import FeatureSchema
from pr2prod.serving.bundle import ModelBundle
from pr2prod.settings import Settings, load_settings

MODEL_NAME = "pr2prod-model"
BENTO_NAME = "pr2prod"
BENTOFILE = Path("bentofile.yaml")
BUILD_CONTEXT = Path("src")
SERVICE_SOURCES = Path("src/pr2prod")
# The bento's requirements (`make lock`; bentofile.yaml names it relative to BUILD_CONTEXT).
SERVING_LOCK = BUILD_CONTEXT / "requirements-serving.lock"
# Where a bento keeps the requirements its image installs.
BENTO_REQUIREMENTS = "env/python/requirements.txt"


# Everything a model bundle is written from (pr2prod.release.bundle, .golden, .reference):
# a change to any of them, not only to the model file, is a new model version.
BUNDLE_INPUTS = (
    paths.MODEL,
    paths.MODEL_CARD,
    paths.SCHEMA,
    paths.METRICS,
    paths.TRAIN_SPLIT,
    paths.TEST_SPLIT,
    SERVICE_SOURCES / "release" / "bundle.py",
    SERVICE_SOURCES / "release" / "golden.py",
    SERVICE_SOURCES / "release" / "reference.py",
    SERVICE_SOURCES / "serving" / "reference.py",
    SERVICE_SOURCES / "release" / "compile.py",
    SERVICE_SOURCES / "release" / "onnx_conversion.py",
    SERVICE_SOURCES / "release" / "onnx_trees.py",
)


@dataclass(frozen=True)
class BentoInfo:
    model_tag: str
    bento_tag: str
    model_created: bool
    bento_created: bool
    inference: dict  # the model card's: which runtime serves the model, and why


def expected_tags(settings: Settings | None = None) -> tuple[str, str]:
    """(model tag, bento tag) for the model and service code in the workspace now, with
    `settings` (default: params.yaml's)."""
    missing = [str(path) for path in BUNDLE_INPUTS if not path.is_file()]
    if missing:
        raise Pr2prodError(
            f"missing {', '.join(missing)}", hint="run the pipeline first: `make repro`"
        )
    salt = _bundle_settings(settings or load_settings())
    model_tag = f"{MODEL_NAME}:{_digest(list(BUNDLE_INPUTS), salt=salt)}"
    return model_tag, f"{BENTO_NAME}:{_digest([BENTOFILE, *shipped_files()], salt=model_tag)}"


def shipped_files() -> list[Path]:
    """What a bento built here takes from the build context: the files bentofile.yaml's
    `include` names (paths or globs relative to the context) and its requirements file."""
    build = yaml.safe_load(BENTOFILE.read_text())
    files: set[Path] = set()
    for pattern in build.get("include", []):
        matched = [path for path in BUILD_CONTEXT.glob(pattern) if path.is_file()]
        if not matched:
            raise Pr2prodError(
                f"{BENTOFILE} includes {pattern!r}, which matches no file in {BUILD_CONTEXT}/",
                hint="fix or remove that entry of `include:` (paths are relative to src/)",
            )
        files.update(matched)
    requirements = build.get("python", {}).get("requirements_txt")
    if requirements:
        files.add(BUILD_CONTEXT / requirements)
    return sorted(files)


def build_bento(settings: Settings, schema: FeatureSchema) -> BentoInfo:
    """Store the model (if new) and build the bento that serves exactly that model."""
    model_tag, bento_tag = expected_tags(settings)
    model_created = _ensure_model(model_tag, settings, schema)
    bento_created = False
    if not _exists(bentoml.bentos.get, bento_tag):
        bento = bentoml.bentos.build_bentofile(
            str(BENTOFILE.resolve()),
            build_ctx=str(BUILD_CONTEXT.resolve()),
            version=bento_tag.split(":")[1],
            args={"model_tag": model_tag},
            labels={"model_tag": model_tag},
        )
        _require_the_runtime_lock(Path(bento.path_of(BENTO_REQUIREMENTS)))
        bento_created = True
    bundle = ModelBundle.load(Path(bentoml.models.get(model_tag).path))
    return BentoInfo(model_tag, bento_tag, model_created, bento_created, bundle.inference)


def built_bento_tag() -> str:
    """The bento for the workspace's model, which must have been built already."""
    _, bento_tag = expected_tags()
    if not _exists(bentoml.bentos.get, bento_tag):
        raise Pr2prodError(
            f"the bento {bento_tag} for the current model is not built", hint="run `make bento`"
        )
    return bento_tag


def stored_bundle() -> ModelBundle:
    """The workspace's model bundle as `make bento` stored it: its golden rows (and the
    answers recorded for them), schema and serving policy."""
    model_tag, _ = expected_tags()
    try:
        model = bentoml.models.get(model_tag)
    except bentoml.exceptions.NotFound:
        raise Pr2prodError(
            f"the model {model_tag} of this workspace is not in the BentoML store",
            hint="run `make bento`",
        ) from None
    return ModelBundle.load(Path(model.path))


def _ensure_model(tag: str, settings: Settings, schema: FeatureSchema) -> bool:
    if _exists(bentoml.models.get, tag):
        return False
    golden = golden_rows(paths.TRAIN_SPLIT, paths.TEST_SPLIT, paths.MODEL, schema, settings.seed)
    # Parity over every test row, and the golden rows the service checks at start-up.
    records = split_records(paths.TEST_SPLIT, schema) + golden["records"]
    model_in_memory = load_pipeline_model(paths.MODEL)
    compiled = compile_for_serving(
        model_in_memory, schema, records, settings.compile, settings.serving
    )
    with bentoml.models.create(tag, labels={"source": "dvc"}) as model:
        write_bundle(
            Path(model.path),
            model_file=paths.MODEL,
            card_file=paths.MODEL_CARD,
            schema_file=paths.SCHEMA,
            metrics_file=paths.METRICS,
            policy=settings.serving,
            golden=golden,
            reference=build_reference(paths.TRAIN_SPLIT, paths.TEST_SPLIT, model_in_memory, schema),
            compiled=compiled,
        )
    return True


def _require_the_runtime_lock(requirements: Path) -> None:
    """Make the bento's requirements the runtime lock, byte for byte.

    BentoML rewrites the file it is given and appends an unhashed `bentoml==<version>` line
    (it adds one unless bentoml is named by URL). pip tolerates that duplicate, but
    `--require-hashes` installers such as `uv pip install --require-hashes` refuse it. The
    lock already pins bentoml, with hashes, at the version building here; so the bento
    gets the lock itself, and every line an image installs is hash-checked.
    """
    locked = re.search(r"^bentoml==(\S+)", SERVING_LOCK.read_text(), re.M)
    if locked is None or locked.group(1) != bentoml.__version__:
        raise Pr2prodError(
            f"{SERVING_LOCK} pins bentoml {locked.group(1) if locked else '(none)'}, but "
            f"bentoml {bentoml.__version__} is building the bento",
            hint="run `make lock`, then `make venv`, so both use the same version",
        )
    requirements.write_bytes(SERVING_LOCK.read_bytes())


def _bundle_settings(settings: Settings) -> str:
    """The settings a bundle records: the serving policy, the seed of its golden rows and
    the compile settings, which decide whether it holds a compiled graph."""
    recorded = [dataclasses.asdict(settings.serving), settings.seed]
    return json.dumps([*recorded, dataclasses.asdict(settings.compile)], sort_keys=True)


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
