"""The main-branch build (.github/workflows/main.yml): the promises its header makes.

test_workflow_lint.py lints it like every workflow; these tests pin what is particular to
it: where the write permission is, that the pushed image is the one built and smoke-tested,
and the image reference the deploy job is handed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "main.yml"


def load() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


def test_runs_on_main_and_by_hand_one_at_a_time() -> None:
    workflow = load()
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    assert workflow[True]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in workflow[True]
    assert workflow["concurrency"]["cancel-in-progress"] is False
    assert "github.ref" in workflow["concurrency"]["group"]


def test_packages_write_only_in_the_push_job() -> None:
    workflow = load()
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert jobs["build"]["permissions"] == {"contents": "read"}
    assert jobs["push"]["permissions"] == {"packages": "write"}
    # The job holding the write token runs no repository code: nothing is checked out.
    assert not uses(jobs["push"], "actions/checkout")
    assert "make " not in runs(jobs["push"])


def test_build_verifies_then_smoke_tests_the_image_it_hands_on() -> None:
    build = load()["jobs"]["build"]
    commands = [step["run"].split()[0:2] for step in build["steps"] if "run" in step]
    order = [c[1] for c in commands if c[0] == "make"]
    assert order == ["data", "verify", "bento", "image", "smoke"]
    [checkout] = uses(build, "actions/checkout")
    assert checkout["with"]["persist-credentials"] is False
    script = runs(build)
    assert 'make image IMAGE="$LOCAL_IMAGE"' in script
    [start] = [step["run"] for step in build["steps"] if "docker run" in step.get("run", "")]
    assert '"$LOCAL_IMAGE"' in start and "127.0.0.1:3000:3000" in start
    assert 'docker save --output "$RUNNER_TEMP/$IMAGE_TARBALL" "$LOCAL_IMAGE"' in script
    # The container is stopped whatever the smoke test says.
    [stop] = [step for step in build["steps"] if "docker stop" in step.get("run", "")]
    assert stop["if"].startswith("${{ always()")


def test_push_loads_the_uploaded_image_and_hands_on_its_reference() -> None:
    workflow = load()
    build, push = workflow["jobs"]["build"], workflow["jobs"]["push"]
    assert push["needs"] == "build"
    assert "refs/heads/main" in push["if"]
    [upload] = uses(build, "actions/upload-artifact")
    [download] = uses(push, "actions/download-artifact")
    assert upload["with"]["name"] == download["with"]["name"] == "${{ env.IMAGE_ARTIFACT }}"
    assert "docker load" in runs(push)
    assert "docker build" not in runs(push) and "make image" not in runs(push)
    # The deploy job's input: the pushed image, by digest.
    assert push["outputs"]["image"] == "${{ steps.publish.outputs.image }}"
    assert "${GITHUB_REPOSITORY,,}" in runs(push)
    assert "--password-stdin" in runs(push)
