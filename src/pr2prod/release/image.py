"""`make image`: the bento as a container image, labelled with where it came from.

The build context is the exported bento (its code, its model and the requirements it was
built with) and our own two-stage Containerfile. Docker builds it where a daemon answers,
Podman elsewhere (IMAGE_BUILDER chooses). The base image is the bentofile's, or the slim
Python image of its Python version, unless IMAGE_BASE names another (a registry that
cannot be reached, a hardened base). A CA bundle (IMAGE_CA_BUNDLE) reaches the
requirements step as a build secret, for builds behind a TLS-intercepting proxy, and never
becomes part of the image.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import bentoml
import yaml

from pr2prod import environment, paths
from pr2prod.errors import Pr2prodError
from pr2prod.report.revisions import head_sha

CONTAINERFILE_TEMPLATE = Path(__file__).with_name("Containerfile")
# What `make image` built (reference, id, size, builder), for `make smoke-image` and CI.
IMAGE_RECORD = paths.IMAGE_CONTEXT.parent / "image.json"
BUILDERS = ("docker", "podman")
CA_BUNDLE_SECRET = "ca-bundle"
# The port the image serves on (its CMD); `pr2prod smoke --image` publishes it.
SERVICE_PORT = 3000


@dataclass(frozen=True)
class BuiltImage:
    """What `make image` built: the record `make smoke-image` and CI read back."""

    reference: str
    id: str
    size_bytes: int
    builder: str
    base: str
    bento: str


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


def choose_builder() -> str:
    """IMAGE_BUILDER when set; else Docker if its daemon answers; else Podman if installed."""
    chosen = environment.IMAGE_BUILDER.value()
    if chosen != "auto":
        if chosen not in BUILDERS:
            raise Pr2prodError(
                f"IMAGE_BUILDER={chosen!r} is not a builder pr2prod knows",
                hint="set IMAGE_BUILDER to docker, podman or auto (or leave it unset)",
            )
        if shutil.which(chosen) is None:
            raise Pr2prodError(
                f"IMAGE_BUILDER={chosen} but `{chosen}` is not installed",
                hint="install it, or leave IMAGE_BUILDER unset to use whichever is present",
            )
        return chosen
    if shutil.which("docker") and _answers(["docker", "info"]):
        return "docker"
    if shutil.which("podman"):
        return "podman"
    raise Pr2prodError(
        "no container builder: neither a Docker daemon answers nor Podman is installed",
        hint="install Docker or Podman; `pr2prod image --context-only` writes the build "
        f"context to {paths.IMAGE_CONTEXT}/ for a machine that has one",
    )


def write_image_context(bento_tag: str, directory: Path, labels: dict[str, str]) -> Path:
    """The build context: the exported bento in bento/ and the rendered Containerfile."""
    if directory.exists():
        shutil.rmtree(directory)
    bento_dir = directory / "bento"
    bento_dir.mkdir(parents=True)
    with tempfile.TemporaryDirectory() as scratch:
        # bentoml export needs an absolute path (a relative one is taken from /).
        archive = bentoml.bentos.export_bento(bento_tag, str(Path(scratch).resolve() / "b.bento"))
        with tarfile.open(archive) as bundle:
            bundle.extractall(bento_dir, filter="data")
    manifest = yaml.safe_load((bento_dir / "bento.yaml").read_text())
    containerfile = directory / "Containerfile"
    containerfile.write_text(
        render_containerfile(
            labels=labels,
            envs={item["name"]: str(item["value"]) for item in manifest.get("envs") or []},
            ca_bundle=bool(environment.IMAGE_CA_BUNDLE.value()),
        )
    )
    return containerfile


def render_containerfile(labels: dict[str, str], envs: dict[str, str], ca_bundle: bool) -> str:
    mount = (
        f"--mount=type=secret,id={CA_BUNDLE_SECRET},target=/run/secrets/{CA_BUNDLE_SECRET} "
        f"PIP_CERT=/run/secrets/{CA_BUNDLE_SECRET} "
        if ca_bundle
        else ""
    )
    text = CONTAINERFILE_TEMPLATE.read_text()
    for marker, value in {
        "@CA_BUNDLE_MOUNT@": mount,
        "@ENVIRONMENT@": _instructions("ENV", envs),
        "@LABELS@": _instructions("LABEL", labels),
    }.items():
        text = text.replace(marker, value)
    return text


def default_base(bento_dir: Path) -> str:
    """The bentofile's base image, or the slim Python image of the bento's Python."""
    docker = yaml.safe_load((bento_dir / "bento.yaml").read_text()).get("docker") or {}
    if docker.get("base_image"):
        return docker["base_image"]
    return f"docker.io/library/python:{docker.get('python_version') or '3.11'}-slim"


def build_image(bento_tag: str, reference: str, labels: dict[str, str]) -> BuiltImage:
    """Build the bento's image with the chosen builder and record what was built."""
    builder = choose_builder()
    ca_bundle = _ca_bundle()
    containerfile = write_image_context(bento_tag, paths.IMAGE_CONTEXT, labels)
    base = environment.IMAGE_BASE.value() or default_base(paths.IMAGE_CONTEXT / "bento")
    command, extra_env = build_command(
        builder, reference, base, containerfile, paths.IMAGE_CONTEXT, ca_bundle
    )
    if subprocess.run(command, env={**os.environ, **extra_env}, check=False).returncode != 0:
        raise Pr2prodError(
            f"`{builder} build` of {reference} failed (its output is above)",
            hint="behind a TLS-intercepting proxy set IMAGE_CA_BUNDLE to its CA bundle; "
            "where the base cannot be pulled, set IMAGE_BASE to one you have",
        )
    facts = inspect_image(builder, reference)
    built = BuiltImage(reference, facts["Id"], int(facts["Size"]), builder, base, bento_tag)
    IMAGE_RECORD.parent.mkdir(parents=True, exist_ok=True)
    IMAGE_RECORD.write_text(json.dumps(asdict(built), indent=2) + "\n")
    return built


def build_command(
    builder: str,
    reference: str,
    base: str,
    containerfile: Path,
    context: Path,
    ca_bundle: Path | None,
) -> tuple[list[str], dict[str, str]]:
    """The build's command line, and what it needs in its environment beyond ours."""
    command = [builder, "build", "--file", str(containerfile), "--tag", reference]
    command += ["--build-arg", f"BASE={base}"]
    extra_env = {}
    if builder == "podman":
        # Podman writes OCI images by default, and the OCI format has no HEALTHCHECK.
        command += ["--format", "docker"]
    if ca_bundle is not None:
        command += ["--secret", f"id={CA_BUNDLE_SECRET},src={ca_bundle}"]
        if builder == "docker":
            extra_env["DOCKER_BUILDKIT"] = "1"  # Docker's legacy builder has no secrets
    return [*command, str(context)], extra_env


def _ca_bundle() -> Path | None:
    named = environment.IMAGE_CA_BUNDLE.value()
    if not named:
        return None
    if not Path(named).is_file():
        raise Pr2prodError(
            f"IMAGE_CA_BUNDLE={named} is not a file",
            hint="name the PEM bundle your proxy's certificate is in, or unset IMAGE_CA_BUNDLE",
        )
    return Path(named).resolve()


def inspect_image(builder: str, reference: str) -> dict:
    """The builder's description of an image (Id, Size, Config with Labels, User, ...)."""
    result = subprocess.run(
        [builder, "image", "inspect", reference], capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise Pr2prodError(
            f"`{builder} image inspect {reference}` failed: {result.stderr.strip()}",
            hint="build it first: `make image IMAGE=<name:tag>`",
        )
    (facts,) = json.loads(result.stdout)
    return facts


def recorded_image() -> BuiltImage | None:
    """The image `make image` last built here, from its record."""
    if not IMAGE_RECORD.is_file():
        return None
    return BuiltImage(**json.loads(IMAGE_RECORD.read_text()))


def _instructions(keyword: str, values: dict[str, str]) -> str:
    return "\n".join(f"{keyword} {name}={json.dumps(value)}" for name, value in values.items())


def _answers(command: list[str]) -> bool:
    return subprocess.run(command, capture_output=True, check=False).returncode == 0
