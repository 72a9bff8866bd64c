"""main.yml's build job, run end to end by act: a real image built, smoke-tested and pushed.

act runs the `build` job for a push to main on this machine (host mode), remote actions
replaced by the stubs in tests/workflows/stubs/ as for the pull-request workflows. Its
steps are the workflow's own: `make data verify bento`, `make image` (Podman here, on the
Debian base the image tests make), `make smoke-image` and the push step. No registry can
be reached, so the push step's `docker` is the stand-in in tests/workflows/stubs/bin/,
which records what would have been pushed and answers the digest Podman gave the image.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import FIXTURES, run
from integration.test_image import HOST_CA_BUNDLE, debian_base, podman, podman_ready
from test_pr_workflow_act import STUBS, failed_steps, restored_dvc_cache, run_act, sha

pytestmark = [pytest.mark.integration, pytest.mark.timeout(1800)]
__all__ = ["debian_base", "podman_ready"]  # fixtures this module uses, defined with the image's

WORKFLOW = Path(".github/workflows/main.yml")
REPOSITORY = "Octo-Org/Pr2prod"  # capitals: registry paths must come out lowercase


def test_the_build_job_builds_smoke_tests_and_pushes_the_image_by_digest(
    project: Path, debian_base: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    work = tmp_path / "act"
    work.mkdir()
    run("git", "add", "--all", cwd=project)
    run("git", "commit", "--quiet", "--allow-empty", "-m", "a merge to main", cwd=project)
    head = sha(project, "main")
    event = work / "event.json"
    event.write_text(
        json.dumps(
            {"ref": "refs/heads/main", "after": head, "repository": {"full_name": REPOSITORY}}
        )
    )
    checkout = clone_for_the_runner_on_main(project, work / "checkout")
    pushes = work / "docker.log"
    monkeypatch.setenv("PATH", f"{STUBS / 'bin'}:{os.environ['PATH']}")
    settings = {
        "IMAGE_BUILDER": "podman",
        "IMAGE_BASE": debian_base,
        "IMAGE_CA_BUNDLE": HOST_CA_BUNDLE,
        "CONTAINERS_CONF": str(FIXTURES / "containers.conf"),
        "DOCKER_STUB_LOG": str(pushes),
        "GITHUB_REPOSITORY": REPOSITORY,
    }
    options = [item for key, value in settings.items() for item in ("--env", f"{key}={value}")]
    image = f"ghcr.io/{REPOSITORY.lower()}/pr2prod:{head}"
    try:
        act = run_act(
            checkout,
            event,
            work,
            workflow=WORKFLOW,
            event_name="push",
            job="build",
            options=(
                *options,
                *("--secret", "GITHUB_TOKEN=token-for-the-push"),
                # A merge's run finds the DVC cache its pull request's run saved.
                *restored_dvc_cache(project, work),
            ),
        )

        assert act.returncode == 0, act.output[-6000:]
        assert failed_steps(act.output) == [], act.output[-6000:]
        for step in ("Build the image", "Smoke-test the image", "Push the image"):
            assert re.search(rf"✅  Success - Main {step}", act.output), (step, act.output[-4000:])
        assert "answered 8 golden rows as evaluated" in act.output
        logged = [json.loads(line) for line in pushes.read_text().splitlines()]
        digest = podman("image", "inspect", "--format", "{{.Digest}}", image).stdout.strip()
        assert logged == [
            {"login": "ghcr.io", "username": logged[0]["username"]},
            {"push": image, "digest": digest},
            {"logout": "ghcr.io"},
        ]
        # The job's output: the pushed image by tag and digest, what the deploy jobs use.
        assert f"image={image}@{digest}" in act.output
    finally:
        podman("rmi", "--force", image, check=False)


def clone_for_the_runner_on_main(upstream: Path, destination: Path) -> Path:
    run("git", "clone", "--quiet", "--branch", "main", upstream, destination, cwd=upstream)
    return destination
