"""The main-branch build (.github/workflows/main.yml): the promises its header makes.

test_workflow_lint.py lints it like every workflow; these tests pin what is particular to
it: where the write permission and each secret go, that the pushed image is the one built
and smoke-tested and is handed on by digest, that the rehearsal and production run in
environments of their own, and that no deploy job can cancel another. The logic the jobs
call is in pr2prod's subcommands (tests/unit/test_deploy_workflow_steps.py); the few
shell lines left are run here with bash, as GitHub runs them, against stub commands.
"""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pr2prod.deploy.carried_state import ARTIFACT
from pr2prod.deploy.carried_state import WORKFLOW as STATE_WORKFLOW

WORKFLOW = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "main.yml"
ROLLBACK_WORKFLOW = WORKFLOW.parent / "rollback.yml"


def load() -> dict[str, Any]:
    return yaml.safe_load(WORKFLOW.read_text(encoding="utf-8"))


def uses(job: dict[str, Any], action: str) -> list[dict[str, Any]]:
    return [step for step in job["steps"] if step.get("uses", "").startswith(f"{action}@")]


def runs(job: dict[str, Any]) -> str:
    return "\n".join(step.get("run", "") for step in job["steps"])


SHELL = ["bash", "--noprofile", "--norc", "-eo", "pipefail"]  # GitHub's `shell: bash`


def step(job: dict[str, Any], name: str) -> dict[str, Any]:
    [found] = [s for s in job["steps"] if s.get("name") == name]
    return found


@dataclass
class StepRun:
    """What one `run:` script did: exit status, output, and the files GitHub reads back."""

    returncode: int
    output: str
    outputs: dict[str, str]
    env_file: str
    summary: str


def run_step(
    script: str,
    workdir: Path,
    env: dict[str, str],
    stubs: dict[str, str] | None = None,
) -> StepRun:
    """Run a step's script in `workdir` with `env`; `stubs` are commands put first on PATH."""
    github = workdir.parent / f"{workdir.name}-github"
    bin_dir = github / "bin"
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name, body in (stubs or {}).items():
        command = bin_dir / name
        command.write_text("#!/usr/bin/env bash\nset -euo pipefail\n" + body)
        command.chmod(0o755)
    files = {name: github / name for name in ("output", "env", "summary", "path")}
    for file in files.values():
        file.write_text("")
    runner_temp = github / "temp"
    runner_temp.mkdir(exist_ok=True)
    full_env = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(github),
        "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_ENV": str(files["env"]),
        "GITHUB_STEP_SUMMARY": str(files["summary"]),
        "GITHUB_PATH": str(files["path"]),
        "GITHUB_REPOSITORY": "owner/repo",
        "GITHUB_WORKSPACE": str(workdir),
        "GITHUB_REF": "refs/heads/main",
        "RUNNER_TEMP": str(runner_temp),
        **env,
    }
    result = subprocess.run(
        [*SHELL, "-c", script],
        cwd=workdir,
        env=full_env,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    outputs = dict(
        line.split("=", 1) for line in files["output"].read_text().splitlines() if "=" in line
    )
    return StepRun(
        result.returncode,
        result.stdout + result.stderr,
        outputs,
        files["env"].read_text(),
        files["summary"].read_text(),
    )


def test_runs_on_main_and_by_hand() -> None:
    workflow = load()
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    assert workflow[True]["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in workflow[True]


def test_no_job_can_cancel_a_waiting_deploy() -> None:
    """GitHub replaces a waiting run or job of a `concurrency` group with a newer one, even
    with cancel-in-progress false: so no group at all, and the cluster's lock serializes."""
    for path in (WORKFLOW, ROLLBACK_WORKFLOW):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "concurrency" not in document, path.name
        for name, job in document["jobs"].items():
            assert "concurrency" not in job, f"{path.name}: {name}"
    production = step(load()["jobs"]["production"], "Roll out the image as a canary")
    assert "--skip-if-behind main" in production["run"]


def test_only_the_build_job_writes_and_only_packages() -> None:
    workflow = load()
    assert workflow["permissions"] == {}
    jobs = workflow["jobs"]
    assert jobs["build"]["permissions"] == {"contents": "read", "packages": "write"}
    assert jobs["rehearsal"]["permissions"] == {"contents": "read", "actions": "read"}
    assert jobs["production"]["permissions"] == {"contents": "read"}


def test_secrets_reach_only_the_steps_that_use_them() -> None:
    for path in (WORKFLOW, ROLLBACK_WORKFLOW):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        assert "secrets." not in str(document.get("env", {})), path.name
        for name, job in document["jobs"].items():
            assert "secrets." not in str(job.get("env", {})), f"{path.name}: {name}"
            for s in job["steps"]:
                given = " ".join(str(value) for value in s.get("env", {}).values())
                if "secrets.KUBE_CONFIG" in given:
                    assert s["name"] == "Connect to the cluster"
                if "github.token" in given:
                    assert s["name"] in (
                        "Push the image and record its digest",
                        "Start the previous release as stable",
                        "Roll out the image as a canary",
                    ), s["name"]
                assert "secrets." not in str(s.get("with", {})), s["name"]


def test_build_verifies_then_builds_smoke_tests_and_pushes_the_same_image() -> None:
    build = load()["jobs"]["build"]
    commands = [s["run"] for s in build["steps"] if "run" in s]
    assert commands[0] == "make data verify bento"
    assert 'make image IMAGE="$IMAGE"' in commands and 'make smoke-image IMAGE="$IMAGE"' in commands
    order = [s.get("name") for s in build["steps"]]
    assert order.index("Build the image") < order.index("Smoke-test the image")
    assert order.index("Smoke-test the image") < order.index("Push the image and record its digest")
    push = step(build, "Push the image and record its digest")
    assert push["if"] == "github.ref == 'refs/heads/main'"
    assert "docker build" not in push["run"] and "make" not in push["run"]
    assert build["outputs"] == {"image": "${{ steps.push.outputs.image }}"}
    [checkout] = uses(build, "actions/checkout")
    assert checkout["with"]["persist-credentials"] is False


def test_the_image_is_named_in_lowercase_after_the_commit(tmp_path: Path) -> None:
    script = step(load()["jobs"]["build"], "Name the image after the commit")["run"]
    result = run_step(script, tmp_path, {"GITHUB_REPOSITORY": "Owner/Repo", "GITHUB_SHA": "c0ffee"})
    assert result.returncode == 0, result.output
    assert result.env_file == "IMAGE=ghcr.io/owner/repo/pr2prod:c0ffee\n"


DOCKER_STUB = r"""
printf '%s\n' "$*" >> "$HOME/docker-calls"
case "$1" in
  login) cat > "$HOME/password" ;;
  image) echo "ghcr.io/owner/repo/pr2prod@sha256:$(printf 'a%.0s' {1..64})" ;;
esac
"""


def test_the_pushed_image_is_handed_on_by_tag_and_digest(tmp_path: Path) -> None:
    script = step(load()["jobs"]["build"], "Push the image and record its digest")["run"]
    image = "ghcr.io/owner/repo/pr2prod:c0ffee"
    env = {"IMAGE": image, "GHCR_TOKEN": "the-token", "GITHUB_ACTOR": "octo"}
    result = run_step(script, tmp_path, env, stubs={"docker": DOCKER_STUB})
    assert result.returncode == 0, result.output
    assert result.outputs == {"image": f"{image}@sha256:{'a' * 64}"}
    github = tmp_path.parent / f"{tmp_path.name}-github"
    calls = (github / "docker-calls").read_text().splitlines()
    assert calls[0] == "login ghcr.io --username octo --password-stdin"
    assert calls[1] == f"push {image}"
    assert calls[-1] == "logout ghcr.io"
    assert (github / "password").read_text() == "the-token"  # on stdin, never in argv


def test_the_rehearsal_has_an_environment_of_its_own() -> None:
    rehearsal = load()["jobs"]["rehearsal"]
    assert rehearsal["environment"] == "rehearsal"
    assert rehearsal["needs"] == "build"
    assert "vars.DEPLOY_TARGET != 'kubernetes'" in rehearsal["if"]
    assert "refs/heads/main" in rehearsal["if"]


def test_the_rehearsal_starts_from_the_last_state_and_saves_the_next() -> None:
    rehearsal = load()["jobs"]["rehearsal"]
    start = step(rehearsal, "Start the previous release as stable")
    assert start["run"] == 'pr2prod rehearsal-start --outputs "$GITHUB_OUTPUT"'
    rollout = step(rehearsal, "Rehearse the canary rollout")
    assert rollout["run"] == "make deploy LOAD=50"
    # The release that already serves is not rolled out again.
    assert rollout["if"] == "steps.start.outputs.stable != steps.start.outputs.built"
    check = step(rehearsal, "Make sure stable serves after the failed rehearsal")
    assert check["if"].startswith("${{ failure()")
    assert check["run"].startswith("pr2prod rehearsal-check")
    save = step(rehearsal, "Save the state for the next rehearsal")
    assert save["if"].startswith("${{ always()")
    [upload] = uses(rehearsal, "actions/upload-artifact")
    # The name the next run looks for (pr2prod.deploy.carried_state).
    assert upload["with"]["name"] == ARTIFACT and WORKFLOW.name == STATE_WORKFLOW
    assert "saved == 'true'" in upload["if"]
    order = [s.get("name") for s in rehearsal["steps"]]
    down = step(rehearsal, "Stop the rehearsal's processes")
    assert down["if"].startswith("${{ always()") and down["run"] == "make down"
    assert order.index(check["name"]) < order.index(save["name"]) < order.index(down["name"])
    summary = step(rehearsal, "Summarise the rehearsal")["run"]
    assert summary.startswith("pr2prod deploy-summary --target local")
    assert summary.rstrip().endswith('>> "$GITHUB_STEP_SUMMARY"')


def test_production_rolls_out_the_pushed_image_by_digest() -> None:
    production = load()["jobs"]["production"]
    assert production["environment"]["name"] == "production"
    assert production["needs"] == "build"
    assert "vars.DEPLOY_TARGET == 'kubernetes'" in production["if"]
    assert "needs.build.outputs.image != ''" in production["if"]
    assert production["env"]["IMAGE"] == "${{ needs.build.outputs.image }}"
    rollout = step(production, "Roll out the image as a canary")
    assert rollout["run"].startswith('.venv/bin/pr2prod deploy canary "$IMAGE"')
    assert "LOAD" not in rollout["run"]  # production traffic, not synthetic
    assert "make " not in runs(production)  # `make deploy` would rebuild the bento first


def test_a_failed_or_cancelled_rollout_ends_the_canary_and_checks_stable() -> None:
    production = load()["jobs"]["production"]
    end = step(production, "End any canary and check that stable serves")
    assert end["if"] == "${{ failure() || cancelled() }}"
    assert end["run"].startswith(".venv/bin/pr2prod abort")
    assert '"${PR2PROD_ENTRY_URL%/}/readyz"' in end["run"]


def test_the_cluster_credentials_are_written_privately_and_removed() -> None:
    for path in (WORKFLOW, ROLLBACK_WORKFLOW):
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
        for job in document["jobs"].values():
            if not any(s.get("name") == "Connect to the cluster" for s in job["steps"]):
                continue
            connect = step(job, "Connect to the cluster")
            assert (
                'pr2prod connect-cluster --kubeconfig "$RUNNER_TEMP/kubeconfig"' in (connect["run"])
            )
            assert connect["run"].rstrip().endswith('>> "$GITHUB_ENV"')
            remove = step(job, "Remove the cluster credentials")
            assert remove["if"].startswith("${{ always()")
            assert 'rm -f "${RUNNER_TEMP}/kubeconfig"' in remove["run"]


def test_the_workflows_stay_orchestration() -> None:
    """Every `run:` block is a few lines; the logic is in tested pr2prod subcommands."""
    total = 0
    for path in (WORKFLOW, ROLLBACK_WORKFLOW):
        text = path.read_text(encoding="utf-8")
        total += len(text.splitlines())
        for job in yaml.safe_load(text)["jobs"].values():
            for s in job["steps"]:
                assert len(s.get("run", "").strip().splitlines()) <= 5, s["name"]
    assert total <= 360
