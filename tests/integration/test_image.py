"""The image, built and run for real: Podman builds the sample bento's image on a Debian base.

No image registry can be reached where the suite runs, so the base image is made from
Debian packages (mmdebstrap + `podman import`, as docs/image.md shows) and kept between
sessions: the first session builds it, later ones reuse it. The image itself is built once
a session, through a CA bundle with a mark in it, and every test looks at that one image.
"""

from __future__ import annotations

import json
import os
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from conftest import FIXTURES, REPO_ROOT, system_program

from pr2prod.data.records import split_records
from pr2prod.ports import free_port
from pr2prod.readiness import wait_until_ready
from pr2prod.schema import load_schema

# Building the base (about 1.5 minutes) and the image (about 2) the first time.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]

PAGE = REPO_ROOT / "docs" / "image.md"
BASE = "localhost/debian-python:bookworm"
DOCUMENTED_IMAGE = "pr2prod:dev"
HOST_CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
# The commands of docs/image.md this file runs, as the page shows them.
MAKE_BASE = (
    "mmdebstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm base.tar",
    f"podman import --change 'CMD [\"/usr/bin/python3\"]' base.tar {BASE}",
)
MAKE_IMAGE = (
    f"IMAGE_BASE={BASE} IMAGE_CA_BUNDLE={HOST_CA_BUNDLE} make image IMAGE={DOCUMENTED_IMAGE}"
)
SMOKE_IMAGE = f"make smoke-image IMAGE={DOCUMENTED_IMAGE}"
TOOLS_THAT_MUST_NOT_SHIP = ["gcc", "cc", "c++", "make", "pip", "pytest", "act", "moto_server"]
MODULES_THAT_MUST_NOT_SHIP = ["pip", "pytest", "moto", "schemathesis"]


def shell(command: str, cwd: Path, replace: dict[str, str] | None = None) -> str:
    """Run a documented command in bash (with test-specific names); its output, or fail."""
    for documented, here in (replace or {}).items():
        command = command.replace(documented, here)
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        cwd=cwd,
        env={**os.environ, "VENV": ""},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(
            f"{command}\nexited {result.returncode}\n--- stdout\n{result.stdout[-4000:]}\n"
            f"--- stderr\n{result.stderr[-4000:]}"
        )
    return result.stdout


def podman(*arguments: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(["podman", *arguments], capture_output=True, text=True, check=False)
    if check and result.returncode != 0:
        pytest.fail(f"podman {' '.join(arguments)} exited {result.returncode}: {result.stderr}")
    return result


@pytest.fixture(scope="session")
def podman_ready() -> None:
    system_program("podman", "install it with `apt-get install podman buildah runc uidmap`")
    # The project passes the environment on to Podman: this is how a user configures it.
    os.environ["CONTAINERS_CONF"] = str(FIXTURES / "containers.conf")
    os.environ["IMAGE_BUILDER"] = "podman"  # not a Docker daemon that may also answer


@pytest.fixture(scope="session")
def debian_base(podman_ready: None, tmp_path_factory: pytest.TempPathFactory) -> str:
    """The base image, made from Debian packages unless an earlier session left it."""
    if podman("image", "exists", BASE, check=False).returncode != 0:
        system_program("mmdebstrap", "install it with `apt-get install mmdebstrap`")
        scratch = tmp_path_factory.mktemp("base")
        for command in MAKE_BASE:
            shell(command, scratch)
    return BASE


@pytest.fixture(scope="session")
def marked_ca_bundle(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """The host's CA bundle with a line of its own in front: (its path, the mark)."""
    host = Path(HOST_CA_BUNDLE)
    if not host.is_file():
        pytest.skip(f"no CA bundle at {HOST_CA_BUNDLE} (a Debian or Ubuntu host has one)")
    mark = f"pr2prod-test-mark-{uuid.uuid4().hex}"
    bundle = tmp_path_factory.mktemp("ca") / "ca-bundle.crt"
    bundle.write_text(f"# {mark}\n{host.read_text()}")  # PEM readers skip text between blocks
    return bundle, mark


@pytest.fixture(scope="session")
def built_image(
    debian_base: str,
    marked_ca_bundle: tuple[Path, str],
    bento_tag: str,
    reproduced_project: Path,
) -> Iterator[dict]:
    """`make image` as docs/image.md shows it, under a name of this session's own."""
    reference = f"localhost/pr2prod-test:{uuid.uuid4().hex[:12]}"
    output = shell(
        MAKE_IMAGE,
        reproduced_project,
        replace={HOST_CA_BUNDLE: str(marked_ca_bundle[0]), DOCUMENTED_IMAGE: reference},
    )
    record = json.loads((reproduced_project / "build" / "image.json").read_text())
    yield {**record, "output": output}
    podman("rmi", "--force", reference, check=False)


@dataclass(frozen=True)
class Running:
    url: str
    container: str


@pytest.fixture(scope="module")
def running_container(built_image: dict) -> Iterator[Running]:
    """The image running with its port published on a free one."""
    port = free_port()
    container = podman(
        "run", "--detach", "--publish", f"127.0.0.1:{port}:3000", built_image["reference"]
    ).stdout.strip()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout=120)
        yield Running(url, container)
    finally:
        podman("stop", "-t", "10", container, check=False)
        podman("rm", "--force", container, check=False)


def test_the_page_shows_the_commands_run_here() -> None:
    page = PAGE.read_text()

    assert [c for c in [*MAKE_BASE, MAKE_IMAGE, SMOKE_IMAGE] if c not in page] == []


def test_make_image_prints_the_size_and_records_the_image(built_image: dict) -> None:
    (facts,) = json.loads(podman("image", "inspect", built_image["reference"]).stdout)

    assert built_image["builder"] == "podman"
    assert built_image["base"] == BASE
    assert built_image["id"] == facts["Id"]
    assert built_image["size_bytes"] == facts["Size"]
    assert f"size {facts['Size'] / 1e6:.0f} MB" in built_image["output"]


def test_make_smoke_image_passes_on_the_built_image(
    built_image: dict, reproduced_project: Path
) -> None:
    output = shell(
        SMOKE_IMAGE, reproduced_project, replace={DOCUMENTED_IMAGE: built_image["reference"]}
    )

    assert "answered 8 golden rows as evaluated" in output
    assert "a request with no records got 400" in output
    assert "/metrics serves" in output
    container = output.split("container ")[1].split(",")[0]
    assert podman("ps", "--all", "--quiet", "--filter", f"id={container}").stdout == ""


def test_an_image_that_never_serves_fails_the_smoke_test_with_its_log(
    debian_base: str, reproduced_project: Path
) -> None:
    # The base image's command is python3, which exits at once: the wait ends then, long
    # before the timeout.
    result = subprocess.run(
        ["pr2prod", "smoke", "--image", debian_base, "--timeout", "60"],
        cwd=reproduced_project,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1
    assert "exited before" in result.stderr and "the end of its log" in result.stderr
    # A bare base image is not a release: no labels, and root.
    assert "the image lacks the labels" in result.stderr
    assert "the image runs as root" in result.stderr
    container = result.stderr.split("container ")[1].split(",")[0]
    assert podman("ps", "--all", "--quiet", "--filter", f"id={container}").stdout == ""


def test_the_image_is_labelled_with_its_bento_and_model_and_has_a_health_check(
    built_image: dict, reproduced_project: Path
) -> None:
    (facts,) = json.loads(podman("image", "inspect", built_image["reference"]).stdout)
    labels = facts["Config"]["Labels"]
    manifest = json.loads(
        subprocess.run(
            ["bentoml", "get", built_image["bento"], "-o", "json"],
            cwd=reproduced_project,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
    )
    (model,) = manifest["services"][0]["models"]

    assert labels["org.opencontainers.image.version"] == built_image["bento"].split(":")[1]
    assert labels["io.pr2prod.model"] == model["tag"]
    assert labels["org.opencontainers.image.revision"] != "unknown"
    assert "io.pr2prod.metrics.accuracy" in labels
    assert "/readyz" in " ".join(facts["Healthcheck"]["Test"])  # Podman shows it here


def test_the_container_runs_as_a_user_who_is_not_root(built_image: dict) -> None:
    ids = podman("run", "--rm", built_image["reference"], "id", "-u").stdout.split()

    assert ids != ["0"] and len(ids) == 1


def test_no_build_tool_or_test_tool_is_in_the_image(built_image: dict) -> None:
    programs = " ".join(TOOLS_THAT_MUST_NOT_SHIP)
    modules = ", ".join(map(repr, MODULES_THAT_MUST_NOT_SHIP))
    found = podman(
        "run",
        "--rm",
        built_image["reference"],
        "sh",
        "-c",
        f"for p in {programs}; do command -v $p; done; python -c "
        f'"import importlib.util as u; print(*[m for m in [{modules}] if u.find_spec(m)])"',
    ).stdout.split()
    # The check sees what it looks for: python is there, as it must be.
    present = podman("run", "--rm", built_image["reference"], "sh", "-c", "command -v python")

    assert found == []
    assert present.stdout.strip() == "/opt/venv/bin/python"


def test_the_ca_bundle_of_the_build_is_in_no_layer(
    built_image: dict, marked_ca_bundle: tuple[Path, str], tmp_path: Path
) -> None:
    archive = tmp_path / "image.tar"
    podman("save", "--format", "docker-archive", "--output", str(archive), built_image["reference"])
    # Proof that file contents are searchable in the saved layers: the service's own code.
    service_line = b"Records = Annotated[list[Record]"
    _, mark = marked_ca_bundle

    assert archive_contains(archive, service_line)
    assert not archive_contains(archive, mark.encode())


def archive_contains(archive: Path, needle: bytes, chunk: int = 1 << 24) -> bool:
    """Whether the bytes occur in the file (read in overlapping chunks)."""
    tail = b""
    with archive.open("rb") as stream:
        while block := stream.read(chunk):
            if needle in tail + block:
                return True
            tail = block[-len(needle) :]
    return False


def test_the_container_predicts_every_test_row_as_the_model_does_in_process(
    running_container: Running, reproduced_project: Path
) -> None:
    schema = load_schema(reproduced_project / "schema.yaml")
    test_split = reproduced_project / "artifacts" / "split" / "test.csv"
    records = split_records(test_split, schema)
    model = joblib.load(reproduced_project / "artifacts" / "model" / "model.joblib")
    frame = pd.DataFrame(records, columns=schema.feature_names)
    classes = list(map(str, model.classes_))
    expected = model.predict_proba(frame)

    response = httpx.post(f"{running_container.url}/predict", json={"records": records}, timeout=60)

    assert response.status_code == 200, response.text
    served = [[answer["probabilities"][label] for label in classes] for answer in response.json()]
    assert len(served) == len(records) > 100
    # The service answers probabilities rounded to 6 decimals.
    np.testing.assert_allclose(served, np.round(expected, 6), rtol=0, atol=1e-9)


def test_the_health_check_passes_on_the_running_container(running_container: Running) -> None:
    result = podman("healthcheck", "run", running_container.container, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
