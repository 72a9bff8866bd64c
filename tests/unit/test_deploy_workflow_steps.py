"""The deploy workflow's steps as pr2prod subcommands, against the local GitHub fake.

main.yml's jobs call these instead of carrying shell: the rehearsal's state fetched from
main's newest run (pages followed) and saved again, the stable check after a failed
rehearsal, the job summary, the cluster connection, and the check that a deploy job is
still the newest of main.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from conftest import REPO_ROOT
from github_fake import FakeGitHub

from pr2prod.cli import main
from pr2prod.commands import deploy as deploy_commands
from pr2prod.deploy import assembly, carried_state
from pr2prod.deploy.carried_state import fetch_newest
from pr2prod.deploy.job_summary import REHEARSAL_HEADING, DeployJob, render
from pr2prod.deploy.local import LocalTarget
from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub
from pr2prod.report import revisions

BENTO_OLD, BENTO_NEW = "pr2prod:aaaa", "pr2prod:bbbb"


@pytest.fixture
def fake() -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        yield server


@pytest.fixture
def in_ci(fake: FakeGitHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A workspace as GitHub Actions describes it, talking to the fake."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GITHUB_REPOSITORY", fake.repository)
    monkeypatch.setenv("GITHUB_TOKEN", fake.token)
    monkeypatch.setenv("GITHUB_API_URL", fake.url)
    # The commit checked out: main's newest (a fresh fork's single commit when none ran).
    monkeypatch.setattr(
        revisions, "head_sha", lambda: fake.main_commits[-1] if fake.main_commits else "f" * 40
    )
    return tmp_path


def state_folder(tmp_path: Path, stable: str | None = BENTO_OLD, **files: str) -> Path:
    folder = tmp_path / f"saved-{len(list(tmp_path.iterdir()))}"
    folder.mkdir()
    if stable is not None:
        (folder / "stable").write_text(stable + "\n")
    (folder / "history.jsonl").write_text('{"release": "pr2prod:aaaa"}\n')
    for name, text in files.items():
        (folder / name).write_text(text)
    return folder


def outputs(file: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in file.read_text().splitlines())


# -- fetching the newest state from main's runs -----------------------------------------------


def test_the_newest_state_of_mains_own_runs_is_found_across_pages(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    older = fake.add_run(
        "main.yml", artifacts={"deploy-state-local": state_folder(tmp_path, "x:1")}
    )
    saved = fake.add_run("main.yml", artifacts={"deploy-state-local": state_folder(tmp_path)})
    for _ in range(120):  # newer runs that saved nothing (failed builds): a second page
        fake.add_run("main.yml", conclusion="failure")
    # Never a pull request's run, nor another branch's, nor another workflow's.
    foreign = {"deploy-state-local": state_folder(tmp_path, "pr2prod:evil")}
    fake.add_run("main.yml", event="pull_request", artifacts=foreign)
    fake.add_run("main.yml", branch="feature", artifacts=foreign)
    fake.add_run("pr.yml", artifacts=foreign)

    with GitHub(fake.repository, fake.token, fake.url) as github:
        carried = fetch_newest(github, tmp_path / "carried", fake.main_commits[-1])

    assert carried is not None and carried.run_id == saved["id"] != older["id"]
    assert carried.stable == BENTO_OLD
    assert carried.history.read_text() == '{"release": "pr2prod:aaaa"}\n'
    listings = [call for call in fake.calls if call.path.endswith("/main.yml/runs")]
    assert [call.query.get("page") for call in listings] == [None, "2"]
    assert all(call.query["branch"] == "main" for call in listings)


def test_an_expired_newest_state_means_none(fake: FakeGitHub, tmp_path: Path) -> None:
    fake.add_run("main.yml", artifacts={"deploy-state-local": state_folder(tmp_path)})
    fake.add_run(
        "main.yml",
        artifacts={"deploy-state-local": state_folder(tmp_path)},
        expired=("deploy-state-local",),
    )
    with GitHub(fake.repository, fake.token, fake.url) as github:
        assert fetch_newest(github, tmp_path / "carried", fake.main_commits[-1]) is None


@pytest.mark.parametrize(
    ("stable", "extra", "message"),
    [
        ("pr2prod:$(reboot)", {}, "names no valid stable release"),
        (BENTO_OLD, {"run.sh": "echo"}, "holds an unexpected 'run.sh'"),
        # No bento is ever imported from an artifact: one that carries one is refused.
        (BENTO_OLD, {"stable.bento": "a bento"}, "holds an unexpected 'stable.bento'"),
    ],
)
def test_a_state_that_is_not_what_main_saves_is_refused(
    fake: FakeGitHub, tmp_path: Path, stable: str, extra: dict[str, str], message: str
) -> None:
    fake.add_run(
        "main.yml", artifacts={"deploy-state-local": state_folder(tmp_path, stable, **extra)}
    )
    with (
        GitHub(fake.repository, fake.token, fake.url) as github,
        pytest.raises(Pr2prodError, match=message),
    ):
        fetch_newest(github, tmp_path / "carried", fake.main_commits[-1])


def test_a_state_saved_on_a_commit_outside_main_is_ignored(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    """A pushed tag named `main`: GitHub reports a push run on head_branch `main`, running
    the tag commit's own main.yml. Its commit is not in main's history."""
    genuine = fake.add_run("main.yml", artifacts={"deploy-state-local": state_folder(tmp_path)})
    forged = state_folder(tmp_path, "ghcr.io/attacker/evil:latest")
    fake.add_run("main.yml", head_sha="e" * 40, artifacts={"deploy-state-local": forged})
    # Nor a state from another workflow file that reports itself as main.yml's branch run.
    fake.add_run("main.yml", artifacts={"deploy-state-local": forged})
    fake.runs[0]["path"] = ".github/workflows/other.yml"

    with GitHub(fake.repository, fake.token, fake.url) as github:
        carried = fetch_newest(github, tmp_path / "carried", fake.main_commits[-1])

    assert carried is not None and carried.run_id == genuine["id"]
    assert carried.stable == BENTO_OLD


# -- rehearsal-start: the previous release, or a first deploy -----------------------------------


def test_the_rehearsal_starts_from_the_release_the_last_one_left(
    fake: FakeGitHub, in_ci: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = fake.add_run("main.yml", artifacts={"deploy-state-local": state_folder(in_ci)})
    started: list[tuple[str | None, str]] = []

    def start(carried: carried_state.CarriedState, built: str) -> str:
        started.append((carried.stable, built))
        return str(carried.stable)

    monkeypatch.setattr(carried_state, "start_previous", start)
    github_output = in_ci / "github-output"
    status = main(["rehearsal-start", "--built", BENTO_NEW, "--outputs", str(github_output)])
    assert status == 0
    assert started == [(BENTO_OLD, BENTO_NEW)]
    assert outputs(github_output) == {
        "stable": BENTO_OLD,
        "run-id": str(run["id"]),
        "built": BENTO_NEW,
    }


@pytest.mark.parametrize("problem", ["no state", "bad token", "start fails"])
def test_without_a_usable_state_the_rehearsal_is_a_first_deploy(
    fake: FakeGitHub,
    in_ci: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    problem: str,
) -> None:
    if problem != "no state":
        fake.add_run("main.yml", artifacts={"deploy-state-local": state_folder(in_ci)})
    if problem == "bad token":
        monkeypatch.setenv("GITHUB_TOKEN", "expired")

    def start(carried: carried_state.CarriedState, built: str) -> str:
        raise Pr2prodError(f"{carried.stable} did not start")

    monkeypatch.setattr(carried_state, "start_previous", start)
    github_output = in_ci / "github-output"
    assert main(["rehearsal-start", "--built", BENTO_NEW, "--outputs", str(github_output)]) == 0
    assert outputs(github_output)["stable"] == ""
    printed = capsys.readouterr().out
    expected = {
        "no state": "::notice::No saved rehearsal state on main",
        "bad token": "::warning::GitHub answered 401",
        "start fails": f"::warning::{BENTO_OLD} did not start: rehearsing a first deploy",
    }[problem]
    assert expected in printed


# -- rehearsal-save and rehearsal-check, with the local target's answers scripted -------------


class ScriptedTarget:
    def __init__(self, stable: dict[str, Any] | None) -> None:
        self.answer = {"router": {"url": "http://127.0.0.1:9"}, "stable": stable}

    def status(self) -> dict[str, Any]:
        return self.answer


def script_target(monkeypatch: pytest.MonkeyPatch, stable: dict[str, Any] | None) -> None:
    monkeypatch.setattr(assembly, "local_target", lambda *args: ScriptedTarget(stable))


def test_the_serving_stable_releases_name_is_saved_with_the_history_and_no_bento(
    in_ci: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script_target(monkeypatch, {"release": BENTO_NEW, "alive": True})
    (in_ci / ".deploy").mkdir()
    (in_ci / ".deploy" / "history.jsonl").write_text("{}\n")
    github_output = in_ci / "github-output"

    assert main(["rehearsal-save", "state", "--outputs", str(github_output)]) == 0
    assert outputs(github_output) == {"saved": "true", "stable": BENTO_NEW}
    saved = {path.name: path.read_bytes() for path in (in_ci / "state").iterdir()}
    assert saved == {"stable": f"{BENTO_NEW}\n".encode(), "history.jsonl": b"{}\n"}


def test_nothing_is_saved_when_no_stable_serves(
    in_ci: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    script_target(monkeypatch, {"release": BENTO_NEW, "alive": False})
    github_output = in_ci / "github-output"
    assert main(["rehearsal-save", "state", "--outputs", str(github_output)]) == 0
    assert outputs(github_output) == {"saved": "false", "stable": ""}
    assert not (in_ci / "state").exists()


@pytest.mark.parametrize(
    ("stable", "previous", "ready", "result", "status"),
    [
        ({"release": BENTO_OLD, "alive": True}, BENTO_OLD, True, "passed", 0),
        ({"release": BENTO_OLD, "alive": True}, BENTO_OLD, False, "failed", 1),
        ({"release": BENTO_OLD, "alive": False}, BENTO_OLD, True, "failed", 1),
        (None, "", True, "none", 0),  # a failed first deploy: nothing served before either
        (None, BENTO_OLD, True, "failed", 1),
    ],
)
def test_after_a_failed_rehearsal_stable_must_still_serve(
    in_ci: Path,
    monkeypatch: pytest.MonkeyPatch,
    stable: dict[str, Any] | None,
    previous: str,
    ready: bool,
    result: str,
    status: int,
) -> None:
    import pr2prod.readiness

    aborted: list[str] = []
    controller = SimpleNamespace(abort=lambda reason: aborted.append(reason) or True)
    monkeypatch.setattr(assembly, "make_controller", lambda *args, **kwargs: controller)
    script_target(monkeypatch, stable)

    def wait(url: str, timeout: float) -> float:
        if not ready:
            raise pr2prod.readiness.NotReady(f"{url} did not answer")
        return 0.0

    monkeypatch.setattr(pr2prod.readiness, "wait_until_ready", wait)
    github_output = in_ci / "github-output"
    arguments = ["rehearsal-check", "--previous", previous, "--outputs", str(github_output)]
    assert main(arguments) == status
    assert aborted == ["aborted: the rehearsal failed"]
    assert outputs(github_output)["result"] == result


# -- the summary ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("previous", "outcome", "says"),
    [
        (BENTO_OLD, "success", f"Stable at the start: `{BENTO_OLD}`, the release the previous"),
        ("", "success", "Stable at the start: none, so this was a first deploy"),
        (BENTO_NEW, "skipped", f"none needed: `{BENTO_NEW}` already served as stable"),
        (BENTO_OLD, "failure", "`make deploy` failed: rolled back or stopped"),
        (BENTO_OLD, "", "Rollout: not reached (an earlier step failed)"),
    ],
)
def test_a_rehearsals_summary_says_first_that_nothing_reached_production(
    previous: str, outcome: str, says: str
) -> None:
    job = DeployJob("local", BENTO_NEW, outcome, previous=previous, state_run="41")
    summary = render(job, "running (local): stable pr2prod:bbbb")
    assert summary.splitlines()[0] == REHEARSAL_HEADING
    assert "nothing was deployed to production" in REHEARSAL_HEADING
    assert says in summary
    assert "```\nrunning (local): stable pr2prod:bbbb\n```" in summary


def test_a_superseded_production_run_says_who_deploys_instead() -> None:
    job = DeployJob("kubernetes", "ghcr.io/o/r/pr2prod:abc", "success", superseded_by="f00d")
    summary = render(job, "history")
    assert "- Rollout: none: main is at `f00d` now" in summary
    assert "succeeded" not in summary


def test_a_production_summary_names_the_image_and_the_namespace() -> None:
    image = "ghcr.io/o/r/pr2prod:abc@sha256:" + "1" * 64
    summary = render(DeployJob("kubernetes", image, "failure", namespace="ml"), "history")
    assert summary.startswith("## Production (Kubernetes, namespace `ml`)")
    assert f"- Release: `{image}`" in summary and "Rehearsal" not in summary


# -- connect-cluster ----------------------------------------------------------------------------


def test_connecting_names_everything_missing_and_writes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    for name in ("PROMETHEUS_URL", "PR2PROD_ENTRY_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    kubeconfig = tmp_path / "kubeconfig"
    assert main(["connect-cluster", "--kubeconfig", str(kubeconfig)]) != 0
    error = capsys.readouterr().err
    for missing in ("KUBE_CONFIG", "PROMETHEUS_URL", "PRODUCTION_URL"):
        assert missing in error
    assert not kubeconfig.exists()


def test_connecting_writes_a_private_kubeconfig_and_asks_the_cluster(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kubectl = bin_dir / "kubectl"
    kubectl.write_text('#!/bin/sh\nprintf "%s\\n" "$*" > "$(dirname "$0")/args"\n')
    kubectl.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("PROMETHEUS_URL", "http://prometheus.example")
    monkeypatch.setenv("PR2PROD_ENTRY_URL", "https://model.example")
    monkeypatch.setenv("KUBE_CONTEXT", "prod")
    monkeypatch.setenv("KUBE_NAMESPACE", "ml")
    monkeypatch.setattr("sys.stdin", io.StringIO("apiVersion: v1\nkind: Config"))
    kubeconfig = tmp_path / "runner-temp" / "kubeconfig"

    assert main(["connect-cluster", "--kubeconfig", str(kubeconfig)]) == 0
    assert capsys.readouterr().out == f"KUBECONFIG={kubeconfig}\n"  # for $GITHUB_ENV, alone
    assert kubeconfig.read_text() == "apiVersion: v1\nkind: Config\n"
    assert stat.S_IMODE(kubeconfig.stat().st_mode) == 0o600
    expected = f"--kubeconfig {kubeconfig} --context prod --namespace ml version\n"
    assert (bin_dir / "args").read_text() == expected


# -- a deploy job that waited behind a newer one ----------------------------------------------


def test_a_deploy_behind_the_newest_main_is_skipped(fake: FakeGitHub, in_ci: Path) -> None:
    fake.branches["main"] = "1" * 40
    assert deploy_commands._newer_commit("main", "1" * 40) is None
    assert deploy_commands._newer_commit("main", "0" * 40) == "1" * 40
    with pytest.raises(Pr2prodError, match="GitHub answered 404"):
        deploy_commands._newer_commit("release", "0" * 40)


def test_the_skipped_deploy_rolls_nothing_out_and_says_why(
    fake: FakeGitHub, in_ci: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pr2prod.report.revisions

    monkeypatch.chdir(REPO_ROOT)  # params.yaml
    fake.branches["main"] = "1" * 40
    monkeypatch.setattr(pr2prod.report.revisions, "head_sha", lambda: "0" * 40)

    def deploy(*args: object, **kwargs: object) -> None:
        pytest.fail("a superseded run must not roll out")

    # The skip is decided while holding the deployment lock: a real one, of a local target.
    controller = SimpleNamespace(target=LocalTarget(in_ci / "local"), deploy=deploy)
    monkeypatch.setattr(assembly, "make_controller", lambda *args, **kwargs: controller)
    github_output = in_ci / "github-output"
    arguments = ["deploy", "canary", "ghcr.io/o/r/pr2prod:0000", "--skip-if-behind", "main"]
    assert main([*arguments, "--outputs", str(github_output)]) == 0
    assert outputs(github_output) == {"superseded-by": "1" * 40}
