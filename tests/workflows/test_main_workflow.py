"""The main-branch build (.github/workflows/main.yml): the promises its header makes.

test_workflow_lint.py lints it like every workflow; these tests pin what is particular to
it: where the write permission is, that the pushed image is the one built and smoke-tested,
the image reference the deploy job is handed, what the deploy job does with it (a rehearsal
on the runner by default, Kubernetes when asked) and what the rollback job does after it.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
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


# --- deploy and rollback ---------------------------------------------------------------------
#
# The deploy job's default (DEPLOY_TARGET unset) is a rehearsal on the runner; with
# DEPLOY_TARGET=kubernetes it deploys the pushed image. Beyond the structure, the scripts
# that decide something (the target, the deployment state to start from, the cluster
# credentials) are run here with bash, as GitHub runs them, against stub commands.

PRODUCTION_GROUP = "pr2prod-production"
ROLLBACK_WORKFLOW = WORKFLOW.parent / "rollback.yml"
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


def test_deploy_follows_the_push_into_the_production_environment() -> None:
    workflow = load()
    deploy = workflow["jobs"]["deploy"]
    assert deploy["needs"] == ["build", "push"]  # push runs on main only, so deploy does
    assert deploy["environment"]["name"] == "production"
    # GitHub records the deployment with the service's URL, but only when there is one.
    url = deploy["environment"]["url"]
    assert "vars.PRODUCTION_URL" in url and "vars.DEPLOY_TARGET == 'kubernetes'" in url
    assert deploy["concurrency"] == {"group": PRODUCTION_GROUP, "cancel-in-progress": False}
    assert deploy["env"]["DEPLOY_TARGET"] == "${{ vars.DEPLOY_TARGET }}"
    assert deploy["env"]["IMAGE"] == "${{ needs.push.outputs.image }}"
    assert deploy["env"]["BENTO_TAG"] == "${{ needs.build.outputs.bento-tag }}"
    # A rehearsal must not read a Prometheus meant for the cluster.
    assert "kubernetes" in deploy["env"]["PROMETHEUS_URL"]


def test_only_push_writes_and_deploy_jobs_only_read() -> None:
    jobs = load()["jobs"]
    assert jobs["deploy"]["permissions"] == {"contents": "read", "actions": "read"}
    assert jobs["rollback"]["permissions"] == {"contents": "read", "actions": "read"}
    writers = [
        name
        for name, job in jobs.items()
        if any(value == "write" for value in job.get("permissions", {}).values())
    ]
    assert writers == ["push"]


def test_the_cluster_credentials_go_only_to_the_step_that_writes_them() -> None:
    for path in (WORKFLOW, ROLLBACK_WORKFLOW):
        text = path.read_text(encoding="utf-8")
        document = yaml.safe_load(text)
        connects = [
            s
            for job in document["jobs"].values()
            for s in job["steps"]
            if "secrets.KUBE_CONFIG" in str(s.get("env", {}))
        ]
        assert {s["name"] for s in connects} == {"Connect to the cluster"}, path.name
        assert text.count("secrets.KUBE_CONFIG") == len(connects), path.name
        # ... and every job that writes them removes them, whatever happened.
        for job in document["jobs"].values():
            if any(s.get("name") == "Connect to the cluster" for s in job["steps"]):
                remove = step(job, "Remove the cluster credentials")
                assert remove["if"].startswith("${{ always()")
                assert 'rm -f "${RUNNER_TEMP}/kubeconfig"' in remove["run"]


@pytest.mark.parametrize(
    ("variable", "target"), [("", "local"), ("local", "local"), ("kubernetes", "kubernetes")]
)
def test_the_target_is_the_rehearsal_unless_kubernetes_is_asked_for(
    tmp_path: Path, variable: str, target: str
) -> None:
    script = step(load()["jobs"]["deploy"], "Choose the deployment target")["run"]
    result = run_step(script, tmp_path, {"DEPLOY_TARGET": variable})
    assert result.returncode == 0, result.output
    assert result.outputs == {"target": target}
    if target == "local":
        assert "nothing is deployed to production" in result.output


@pytest.mark.parametrize(
    ("variable", "message"),
    [("kind", "DEPLOY_TARGET=kind is not implemented"), ("k8s", "is not one of")],
)
def test_other_targets_are_refused(tmp_path: Path, variable: str, message: str) -> None:
    script = step(load()["jobs"]["deploy"], "Choose the deployment target")["run"]
    result = run_step(script, tmp_path, {"DEPLOY_TARGET": variable})
    assert result.returncode == 1
    assert "::error::DEPLOY_TARGET=" in result.output and message in result.output
    assert result.outputs == {}


def connect_scripts() -> list[str]:
    rollback_workflow = yaml.safe_load(ROLLBACK_WORKFLOW.read_text(encoding="utf-8"))
    jobs = [*load()["jobs"].values(), rollback_workflow["jobs"]["rollback"]]
    return [
        s["run"] for job in jobs for s in job["steps"] if s.get("name") == "Connect to the cluster"
    ]


def test_connecting_names_everything_missing_before_writing_anything(tmp_path: Path) -> None:
    [script, *_] = connect_scripts()
    env = {"KUBE_CONFIG": "", "PROMETHEUS_URL": "", "PRODUCTION_URL": "", "KUBE_CONTEXT": ""}
    result = run_step(script, tmp_path, env, stubs={"kubectl": "exit 0\n"})
    assert result.returncode == 1
    for missing in ("secret KUBE_CONFIG", "variable PROMETHEUS_URL", "variable PRODUCTION_URL"):
        assert missing in result.output
    assert result.env_file == ""


def test_connecting_writes_a_private_kubeconfig_outside_the_workspace(tmp_path: Path) -> None:
    [script, *_] = connect_scripts()
    env = {
        "KUBE_CONFIG": "apiVersion: v1\nkind: Config\n",
        "PROMETHEUS_URL": "http://prometheus.example",
        "PRODUCTION_URL": "https://model.example",
        "KUBE_CONTEXT": "prod",
    }
    kubectl = 'printf "%s\\n" "$*" > "$HOME/kubectl-args"; cat "$KUBECONFIG" > "$HOME/seen"\n'
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    result = run_step(script, workspace, env, stubs={"kubectl": kubectl})
    assert result.returncode == 0, result.output
    [line] = result.env_file.splitlines()
    kubeconfig = Path(line.removeprefix("KUBECONFIG="))
    assert kubeconfig.read_text() == env["KUBE_CONFIG"] + "\n"
    assert kubeconfig.stat().st_mode & 0o777 == 0o600
    assert not kubeconfig.is_relative_to(workspace)
    github = tmp_path / "workspace-github"
    assert (github / "kubectl-args").read_text() == "--context prod version\n"
    assert (github / "seen").read_text() == env["KUBE_CONFIG"] + "\n"


def test_every_copy_of_the_cluster_and_state_scripts_is_the_same() -> None:
    assert len(set(connect_scripts())) == 1 and len(connect_scripts()) == 3
    assert len(set(state_scripts())) == 1 and len(state_scripts()) == 3


def state_scripts() -> list[str]:
    rollback_workflow = yaml.safe_load(ROLLBACK_WORKFLOW.read_text(encoding="utf-8"))
    jobs = [*load()["jobs"].values(), rollback_workflow["jobs"]["rollback"]]
    name = "Fetch the latest deployment state"
    return [s["run"] for job in jobs for s in job["steps"] if s.get("name") == name]


# `gh api <path> --jq <filter>` answers from $GH_RESPONSE (or fails when $GH_FAIL is set);
# `gh run download <id> --repo R --name N --dir D` copies $GH_ARTIFACTS/<id>/<N>/ to D.
GH_STUB = r"""
printf '%s\n' "$*" >> "${GH_CALLS:-$HOME/gh-calls}"
if [[ -n "${GH_FAIL:-}" ]]; then
  echo "gh: HTTP 502" >&2
  exit 1
fi
case "$1" in
  api)
    jq --raw-output "$4" "$GH_RESPONSE"
    ;;
  run)
    run_id="$3"; name="$7"; dir="$9"
    source="$GH_ARTIFACTS/$run_id/$name"
    [[ -d "$source" ]] || { echo "no artifact $name in run $run_id" >&2; exit 1; }
    mkdir -p "$dir"
    cp -R "$source"/. "$dir"/
    ;;
  *) exit 2 ;;
esac
"""


def artifact(
    run_id: int,
    created: str,
    branch: str = "main",
    head_repository_id: int = 1,
    expired: bool = False,
) -> dict[str, Any]:
    return {
        "name": "deploy-state-local",
        "expired": expired,
        "created_at": created,
        "workflow_run": {
            "id": run_id,
            "repository_id": 1,
            "head_repository_id": head_repository_id,
            "head_branch": branch,
            "head_sha": "0" * 40,
        },
    }


def fetch_state(
    tmp_path: Path,
    artifacts: list[dict[str, Any]],
    stored: dict[int, dict[str, str]] | None = None,
    required: bool = False,
    fail: bool = False,
) -> tuple[StepRun, Path]:
    """Run the deploy job's fetch step against a stubbed GitHub API; return it and .deploy."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    response = tmp_path / "response.json"
    response.write_text(json.dumps({"total_count": len(artifacts), "artifacts": artifacts}))
    store = tmp_path / "store"
    for run_id, files in (stored or {}).items():
        folder = store / str(run_id) / "deploy-state-local"
        folder.mkdir(parents=True)
        for name, text in files.items():
            (folder / name).write_text(text)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    env = {
        "GH_TOKEN": "token",
        "GH_RESPONSE": str(response),
        "GH_ARTIFACTS": str(store),
        "STATE_ARTIFACT": "deploy-state-local",
        "STATE_DIR": str(tmp_path / "downloaded"),
        "STATE_REQUIRED": "true" if required else "false",
        **({"GH_FAIL": "1"} if fail else {}),
    }
    script = step(load()["jobs"]["deploy"], "Fetch the latest deployment state")["run"]
    return run_step(script, workspace, env, stubs={"gh": GH_STUB}), workspace / ".deploy"


def test_the_state_comes_from_the_newest_upload_on_this_repositorys_main(
    tmp_path: Path,
) -> None:
    artifacts = [
        artifact(101, "2025-01-01T00:00:00Z"),
        artifact(103, "2025-01-03T00:00:00Z"),  # the one
        artifact(102, "2025-01-02T00:00:00Z"),
        artifact(104, "2025-01-04T00:00:00Z", expired=True),
        artifact(105, "2025-01-05T00:00:00Z", branch="feature"),
        artifact(106, "2025-01-06T00:00:00Z", head_repository_id=2),  # a fork's "main"
    ]
    history = '{"release": "pr2prod:aaaa", "decision": "promoted"}\n'
    stored = {103: {"history.jsonl": history, "stable": "pr2prod:aaaa\n", "stable.bento": "b"}}
    result, deploy_dir = fetch_state(tmp_path, artifacts, stored)
    assert result.returncode == 0, result.output
    assert result.outputs["found"] == "true"
    assert result.outputs["run-id"] == "103"
    assert result.outputs["stable"] == "pr2prod:aaaa"
    assert (Path(result.outputs["dir"]) / "stable.bento").read_text() == "b"
    assert (deploy_dir / "history.jsonl").read_text() == history
    calls = (tmp_path / "workspace-github" / "gh-calls").read_text()
    assert "repos/owner/repo/actions/artifacts?name=deploy-state-local&per_page=100" in calls
    assert "run download 103 --repo owner/repo --name deploy-state-local" in calls


def test_without_an_earlier_state_it_is_a_first_deploy(tmp_path: Path) -> None:
    only_others = [artifact(7, "2025-01-01T00:00:00Z", branch="feature")]
    result, deploy_dir = fetch_state(tmp_path, only_others)
    assert result.returncode == 0, result.output
    assert result.outputs == {"found": "false"}
    assert "nothing was deployed before" in result.output
    assert not deploy_dir.exists()


def test_an_unreachable_state_is_a_first_rehearsal_but_stops_a_real_deploy(
    tmp_path: Path,
) -> None:
    rehearsal, _ = fetch_state(tmp_path / "rehearsal", [], fail=True)
    assert rehearsal.returncode == 0, rehearsal.output
    assert rehearsal.outputs == {"found": "false"}
    assert "::warning::Could not list" in rehearsal.output

    production, _ = fetch_state(tmp_path / "production", [], fail=True, required=True)
    assert production.returncode == 1
    assert "::error::Could not list" in production.output


def test_an_unfinished_rollout_travels_with_the_history(tmp_path: Path) -> None:
    files = {"history.jsonl": "{}\n", "rollout.json": '{"release": "x"}'}
    result, deploy_dir = fetch_state(
        tmp_path, [artifact(5, "2025-01-01T00:00:00Z")], {5: files}, required=True
    )
    assert result.returncode == 0, result.output
    assert result.outputs["stable"] == ""
    assert (deploy_dir / "rollout.json").read_text() == files["rollout.json"]


def test_a_malformed_stable_release_is_not_used(tmp_path: Path) -> None:
    files = {"history.jsonl": "{}\n", "stable": "pr2prod:$(reboot)\n"}
    result, deploy_dir = fetch_state(tmp_path, [artifact(5, "2025-01-01T00:00:00Z")], {5: files})
    assert result.returncode == 0, result.output
    assert result.outputs == {"found": "false"}
    assert "names no valid stable release" in result.output
    assert not deploy_dir.exists()


def test_the_rehearsal_runs_the_canary_under_synthetic_load_and_says_so() -> None:
    deploy = load()["jobs"]["deploy"]
    order = [s.get("name") for s in deploy["steps"]]
    start = step(deploy, "Start the previous release as stable")
    rehearse = step(deploy, "Rehearse the canary rollout on the runner")
    local = "steps.target.outputs.target == 'local'"
    assert start["if"] == local and rehearse["if"].startswith(f"{local} && ")
    assert 'pr2prod up "$PREVIOUS"' in start["run"]
    assert 'bentoml import "$STATE_DIR/stable.bento"' in start["run"]
    assert rehearse["run"] == "make deploy LOAD=50"
    # The release that already serves is not rolled out again.
    assert "steps.start.outputs.stable != env.BENTO_TAG" in rehearse["if"]
    # The stable check runs on the runner that holds the processes, before they stop.
    check = step(deploy, "Make sure stable serves after the failed rehearsal")
    assert check["if"].startswith("${{ failure()")
    assert "make abort" in check["run"] and "/readyz" in check["run"]
    down = step(deploy, "Stop the rehearsal's processes")
    assert down["if"].startswith("${{ always()") and down["run"] == "make down"
    assert order.index(check["name"]) < order.index("Save the deployment state")
    assert order.index("Save the deployment state") < order.index(down["name"])
    # The summary's first line says plainly that nothing reached production.
    summary = step(deploy, "Summarise the deployment")["run"]
    first = summary.split('if [[ "$TARGET" == local ]]; then', 1)[1].strip().splitlines()[0]
    assert first == (
        'echo "## Rehearsal: the canary ran on this runner with the local target; '
        'nothing was deployed to production"'
    )
    assert "make --silent deploy-status" in summary


def test_kubernetes_rolls_out_the_pushed_image() -> None:
    deploy = load()["jobs"]["deploy"]
    rollout = step(deploy, "Roll out the image as a canary on Kubernetes")
    assert rollout["if"] == "steps.target.outputs.target == 'kubernetes'"
    assert rollout["run"] == 'make deploy RELEASE="$IMAGE"'
    assert "LOAD" not in rollout["run"]  # production traffic, not synthetic


def test_the_state_is_saved_for_the_next_run_whatever_the_outcome() -> None:
    deploy = load()["jobs"]["deploy"]
    save = step(deploy, "Save the deployment state")
    assert save["if"].startswith("${{ always()")
    assert 'bentoml export "$stable" "$STATE_OUT/stable.bento"' in save["run"]
    [upload] = uses(deploy, "actions/upload-artifact")
    assert upload["with"]["name"] == "deploy-state-${{ steps.target.outputs.target }}"
    assert upload["with"]["overwrite"] is True
    assert "saved == 'true'" in upload["if"]


def test_rollback_job_ends_the_canary_after_a_failed_or_cancelled_deploy() -> None:
    rollback = load()["jobs"]["rollback"]
    assert rollback["needs"] == "deploy"
    assert "always()" in rollback["if"]
    assert "needs.deploy.result == 'failure'" in rollback["if"]
    assert "needs.deploy.result == 'cancelled'" in rollback["if"]
    assert rollback["environment"]["name"] == "production"
    assert rollback["concurrency"] == {"group": PRODUCTION_GROUP, "cancel-in-progress": False}
    script = runs(rollback)
    # `make rollback` would replace the stable release, which is the good one after a
    # failed canary: the job ends the canary and checks stable instead.
    assert "make abort" in script and "make rollback" not in script
    assert '"${PRODUCTION_URL%/}/readyz"' in script
    # Nothing touches a cluster unless DEPLOY_TARGET says there is one (the steps after
    # these depend on `abort`, which does not run otherwise).
    order = [s.get("name") for s in rollback["steps"]]
    for s in rollback["steps"][1 : order.index("End any canary") + 1]:
        assert "vars.DEPLOY_TARGET == 'kubernetes'" in s["if"], s["name"]
    assert "vars.DEPLOY_TARGET != 'kubernetes'" in rollback["steps"][0]["if"]
    [upload] = uses(rollback, "actions/upload-artifact")
    assert upload["with"]["name"] == "deploy-state-kubernetes"


@pytest.mark.parametrize(
    ("check", "returncode", "says"),
    [
        ("passed", 0, "stable `pr2prod:old` still served"),
        ("none", 0, "was a first deploy"),
        ("failed", 1, "did not serve"),
        ("", 0, "no check ran"),
    ],
)
def test_rollback_job_reports_the_rehearsals_own_check(
    tmp_path: Path, check: str, returncode: int, says: str
) -> None:
    script = step(load()["jobs"]["rollback"], "Report the rehearsal's check")["run"]
    env = {
        "DEPLOY_TARGET": "",
        "STABLE_BEFORE": "pr2prod:old",
        "STABLE_AFTER": "pr2prod:old" if check == "passed" else "",
        "CHECK": check,
    }
    result = run_step(script, tmp_path, env)
    assert result.returncode == returncode, result.output
    assert result.summary.startswith("## Rehearsal: nothing to roll back in production")
    assert says in result.summary


# `pr2prod status --json` answers $STATUS_JSON; curl exits $CURL_EXIT; make records its
# arguments and fails for `abort` when $ABORT_FAILS is set.
CHECK_STUBS = {
    "pr2prod": 'printf "%s\\n" "$STATUS_JSON"\n',
    "curl": 'printf "%s\\n" "$*" >> "$HOME/curl-calls"\nexit "${CURL_EXIT:-0}"\n',
    "make": (
        'printf "%s\\n" "$*" >> "$HOME/make-calls"\n'
        'if [[ "$1" == abort && -n "${ABORT_FAILS:-}" ]]; then exit 1; fi\n'
    ),
}


def status_json(stable_alive: bool | None) -> str:
    stable = None if stable_alive is None else {"release": "pr2prod:old", "alive": stable_alive}
    return json.dumps({"router": {"url": "http://127.0.0.1:3000"}, "stable": stable})


@pytest.mark.parametrize(
    ("stable_alive", "previous", "curl_exit", "result", "returncode"),
    [
        (True, "pr2prod:old", 0, "passed", 0),
        (True, "pr2prod:old", 7, "failed", 1),  # listed as stable, but does not answer
        (False, "pr2prod:old", 0, "failed", 1),  # its process is gone
        (None, "", 0, "none", 0),  # a failed first deploy: nothing served before either
        (None, "pr2prod:old", 0, "failed", 1),
    ],
)
def test_the_rehearsal_checks_stable_after_a_failure(
    tmp_path: Path,
    stable_alive: bool | None,
    previous: str,
    curl_exit: int,
    result: str,
    returncode: int,
) -> None:
    script = step(load()["jobs"]["deploy"], "Make sure stable serves after the failed rehearsal")
    env = {
        "PREVIOUS": previous,
        "STATUS_JSON": status_json(stable_alive),
        "CURL_EXIT": str(curl_exit),
        "ABORT_FAILS": "1",  # the check goes on regardless
    }
    checked = run_step(script["run"], tmp_path, env, stubs=CHECK_STUBS)
    assert checked.returncode == returncode, checked.output
    assert checked.outputs["result"] == result
    github = tmp_path.parent / f"{tmp_path.name}-github"
    assert (github / "make-calls").read_text().splitlines()[0] == "abort"
    if stable_alive:
        assert checked.outputs["stable"] == "pr2prod:old"
        assert "http://127.0.0.1:3000/readyz" in (github / "curl-calls").read_text()


DEPLOY_STATUS_STUB = 'echo "running (local): stable pr2prod:new at http://127.0.0.1:1"\n'


@pytest.mark.parametrize(
    ("started", "previous", "outcome", "says"),
    [
        ("success", "pr2prod:old", "success", "Stable at the start: `pr2prod:old`"),
        ("success", "", "success", "Stable at the start: none, so this was a first deploy"),
        ("success", "pr2prod:new", "skipped", "none needed: `pr2prod:new` already served"),
        ("success", "pr2prod:old", "failure", "`make deploy` failed: rolled back or stopped"),
        ("skipped", "", "skipped", "Rollout: not reached (an earlier step failed)"),
    ],
)
def test_the_rehearsals_summary_says_first_that_nothing_reached_production(
    tmp_path: Path, started: str, previous: str, outcome: str, says: str
) -> None:
    script = step(load()["jobs"]["deploy"], "Summarise the deployment")["run"]
    env = {
        "TARGET": "local",
        "DEPLOY_TARGET": "",
        "BENTO_TAG": "pr2prod:new",
        "STATE_RUN": "41",
        "STARTED": started,
        "PREVIOUS": previous,
        "OUTCOME": outcome,
        "CHECK": "",
        "STABLE_AFTER": "",
    }
    summary = run_step(script, tmp_path, env, stubs={"make": DEPLOY_STATUS_STUB}).summary
    assert summary.splitlines()[0] == (
        "## Rehearsal: the canary ran on this runner with the local target; "
        "nothing was deployed to production"
    )
    assert says in summary
    # Nothing is said about a start that did not happen.
    assert ("Stable at the start" in summary) == (started == "success")
    assert "running (local): stable pr2prod:new" in summary


def test_a_production_summary_names_the_image(tmp_path: Path) -> None:
    script = step(load()["jobs"]["deploy"], "Summarise the deployment")["run"]
    env = {
        "TARGET": "kubernetes",
        "KUBE_NAMESPACE": "pr2prod",
        "IMAGE": "ghcr.io/o/r/pr2prod@sha256:" + "1" * 64,
        "OUTCOME": "success",
    }
    summary = run_step(script, tmp_path, env, stubs={"make": DEPLOY_STATUS_STUB}).summary
    assert summary.startswith("## Production (Kubernetes, namespace `pr2prod`)")
    assert "Rehearsal" not in summary
    assert env["IMAGE"] in summary
