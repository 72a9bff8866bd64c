"""The image's Containerfile and the choice of builder, without building anything."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pr2prod.errors import Pr2prodError
from pr2prod.release import image
from pr2prod.release.container import REQUIRED_LABELS, image_problems
from pr2prod.release.image import (
    build_command,
    choose_builder,
    default_base,
    render_containerfile,
)

LABELS = {"io.pr2prod.model": "pr2prod-model:abc", "org.opencontainers.image.version": "v1"}


def stages(containerfile: str) -> list[str]:
    return re.split(r"^FROM ", containerfile, flags=re.MULTILINE)[1:]


def test_the_final_stage_holds_the_environment_and_the_bento_run_by_a_non_root_user() -> None:
    text = render_containerfile(LABELS, {"BENTOML_DO_NOT_TRACK": "true"}, ca_bundle=False)
    build, final = stages(text)

    assert "pip install -r /opt/requirements.txt" in build
    assert "pip" not in final.replace("/opt/venv", "")  # installed in the first stage only
    assert "COPY --from=environment /opt/venv /opt/venv" in final
    assert "COPY bento /home/bentoml/bento" in final
    assert re.search(r"^USER 1034:1034$", final, flags=re.MULTILINE)
    assert "HEALTHCHECK" in final and "/readyz" in final
    assert 'CMD ["bentoml", "serve", "/home/bentoml/bento", "--host", "0.0.0.0"' in final
    assert 'LABEL io.pr2prod.model="pr2prod-model:abc"' in final
    assert 'ENV BENTOML_DO_NOT_TRACK="true"' in final
    assert not re.search(r"@[A-Z_]+@", text)


def test_a_ca_bundle_is_a_secret_of_the_requirements_step_only() -> None:
    without = render_containerfile(LABELS, {}, ca_bundle=False)
    text = render_containerfile(LABELS, {}, ca_bundle=True)
    build, final = stages(text)

    assert "--mount=type=secret" not in without
    (step,) = [line for line in build.splitlines() if "--mount=type=secret" in line]
    assert step.startswith("RUN ") and "PIP_CERT=/run/secrets/ca-bundle" in step
    assert "--mount" not in final and "ca-bundle" not in final


def test_the_default_base_is_the_bentofiles_or_the_slim_python_of_its_version(
    tmp_path: Path,
) -> None:
    (tmp_path / "bento.yaml").write_text("docker:\n  python_version: '3.12'\n")
    assert default_base(tmp_path) == "docker.io/library/python:3.12-slim"

    (tmp_path / "bento.yaml").write_text("docker:\n  base_image: registry.example/py:1\n")
    assert default_base(tmp_path) == "registry.example/py:1"


def test_an_unknown_builder_is_refused_with_the_choices(monkeypatch) -> None:
    monkeypatch.setenv("IMAGE_BUILDER", "kaniko")

    with pytest.raises(Pr2prodError) as raised:
        choose_builder()
    assert "docker, podman or auto" in raised.value.hint


def test_auto_takes_podman_when_no_docker_daemon_answers(monkeypatch) -> None:
    monkeypatch.delenv("IMAGE_BUILDER", raising=False)
    monkeypatch.setattr(image.shutil, "which", lambda name: f"/usr/bin/{name}")
    monkeypatch.setattr(image, "_answers", lambda command: False)

    assert choose_builder() == "podman"


def test_with_neither_builder_the_error_offers_the_build_context(monkeypatch) -> None:
    monkeypatch.delenv("IMAGE_BUILDER", raising=False)
    monkeypatch.setattr(image.shutil, "which", lambda name: None)

    with pytest.raises(Pr2prodError) as raised:
        choose_builder()
    assert "--context-only" in raised.value.hint


def test_podman_keeps_the_health_check_and_docker_needs_buildkit_only_for_the_secret() -> None:
    def build(builder: str, ca_bundle: Path | None) -> tuple[list[str], dict[str, str]]:
        return build_command(
            builder, "app:1", "base:1", Path("ctx/Containerfile"), Path("ctx"), ca_bundle
        )

    podman, podman_env = build("podman", Path("/certs/ca.pem"))
    docker, docker_env = build("docker", None)
    docker_with_bundle, buildkit = build("docker", Path("/certs/ca.pem"))

    assert podman[:2] == ["podman", "build"] and podman[-1] == "ctx"
    assert "--format docker" in " ".join(podman)
    assert "--secret id=ca-bundle,src=/certs/ca.pem" in " ".join(podman)
    assert "--build-arg BASE=base:1" in " ".join(docker)
    assert "--format" not in docker and "--secret" not in docker
    assert podman_env == docker_env == {}
    assert "--secret" in docker_with_bundle and buildkit == {"DOCKER_BUILDKIT": "1"}


def test_a_ca_bundle_that_is_not_a_file_is_refused(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMAGE_CA_BUNDLE", str(tmp_path / "missing.pem"))

    with pytest.raises(Pr2prodError, match="is not a file"):
        image._ca_bundle()


def test_an_image_without_labels_or_running_as_root_has_problems() -> None:
    labelled = {label: "x" for label in REQUIRED_LABELS}

    assert image_problems({"Config": {"Labels": labelled, "User": "1034:1034"}}) == []
    unlabelled_root = image_problems({"Config": {"Labels": None, "User": ""}})
    assert len(unlabelled_root) == 2
    assert "io.pr2prod.model" in unlabelled_root[0] and "root" in unlabelled_root[1]
    assert image_problems({"Config": {"Labels": labelled, "User": "root"}}) != []
