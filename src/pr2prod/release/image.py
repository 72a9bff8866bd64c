"""`make image`: the bento as a container image, labelled with where it came from.

Where a Docker daemon runs, `bentoml containerize` builds the image. Elsewhere a complete
build context is written instead (the bento, its model and a Dockerfile ending in the same
labels), ready for `docker build` on a machine that has Docker.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path

import bentoml

from pr2prod import environment, paths
from pr2prod.report.revisions import head_sha


def image_labels(bento_tag: str, model_tag: str) -> dict[str, str]:
    """OCI labels: source, revision, version, and the model with its key test metrics."""
    labels = {
        "org.opencontainers.image.title": "pr2prod",
        "org.opencontainers.image.version": bento_tag.split(":")[1],
        "org.opencontainers.image.revision": head_sha() or "unknown",
        "io.pr2prod.model": model_tag,
    }
    repository = environment.GITHUB_REPOSITORY.value()
    if repository:
        server = environment.GITHUB_SERVER_URL.value()
        labels["org.opencontainers.image.source"] = f"{server}/{repository}"
    if paths.METRICS.is_file():
        figures = json.loads(paths.METRICS.read_text())
        for name in ("accuracy", "f1", "roc_auc", "log_loss"):
            if name in figures:
                labels[f"io.pr2prod.metrics.{name}"] = str(figures[name])
    return labels


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    return subprocess.run(["docker", "info"], capture_output=True, check=False).returncode == 0


def containerize(bento_tag: str, image: str, labels: dict[str, str]) -> None:
    options = [item for key, value in labels.items() for item in ("--opt", f"label={key}={value}")]
    subprocess.run(["bentoml", "containerize", bento_tag, "-t", image, *options], check=True)


def write_image_context(bento_tag: str, directory: Path, labels: dict[str, str]) -> Path:
    """A complete Docker build context for the bento (its files, model and Dockerfile)."""
    if directory.exists():
        shutil.rmtree(directory)
    directory.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        # bentoml export needs an absolute path (a relative one is taken from /).
        archive = bentoml.bentos.export_bento(bento_tag, str(Path(scratch).resolve() / "b.bento"))
        with tarfile.open(archive) as bundle:
            bundle.extractall(directory, filter="data")
    dockerfile = directory / "Dockerfile"
    bentoml.container.get_containerfile(bento_tag, output_path=str(dockerfile.resolve()))
    label_lines = "".join(f"LABEL {key}={json.dumps(value)}\n" for key, value in labels.items())
    dockerfile.write_text(dockerfile.read_text().rstrip("\n") + "\n\n" + label_lines)
    return dockerfile
