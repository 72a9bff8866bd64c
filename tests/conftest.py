"""Shared test set-up: an isolated environment for DVC and git, and throw-away project copies."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import yaml

from pr2prod.deploy.target import DeployTarget
from pr2prod.errors import Pr2prodError
from pr2prod.ports import free_port
from pr2prod.processes import stop_process
from pr2prod.readiness import NotReady, Watched, wait_until_ready

REPO_ROOT = Path(__file__).resolve().parents[1]
FIXTURES = Path(__file__).resolve().parent / "fixtures"


# The longest test files, longest first, as measured on two cores (each several minutes of
# one worker). `make test` gives each worker a whole file at a time, in collection order
# (`--no-loadscope-reorder`): starting with these and ending with the many short files
# keeps both workers busy to the end, instead of one running a long file alone after the
# other has run out of work. Only the order changes: every test still runs.
LONGEST_FILES = (
    "integration/test_canary_rollouts.py",
    "integration/test_calibrated_canaries.py",
    "integration/test_pipeline.py",
    "integration/test_report.py",
    "integration/test_regression_canaries.py",
    "integration/test_regression_service.py",
    "docs/test_recipes.py",
    "workflows/test_pr_workflow_act.py",
    "integration/test_sweep.py",
    "integration/test_service.py",
    "integration/test_image.py",
    "integration/test_local_target.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The longest files first, then the other integration and workflow files, the unit
    tests last (a stable sort: within a file, and among equals, the order is kept)."""

    def rank(item: pytest.Item) -> tuple[int, bool]:
        file = Path(str(item.path)).relative_to(Path(__file__).parent).as_posix()
        longest = LONGEST_FILES.index(file) if file in LONGEST_FILES else len(LONGEST_FILES)
        return longest, file.startswith("unit/")

    items.sort(key=rank)


@pytest.fixture(scope="session", autouse=True)
def isolated_environment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Keep DVC and git away from the real home directory, caches and configuration."""
    home = tmp_path_factory.mktemp("home")
    saved = dict(os.environ)
    os.environ.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "DVC_SITE_CACHE_DIR": str(home / "dvc-site-cache"),
            "DVC_GLOBAL_CONFIG_DIR": str(home / "dvc-global-config"),
            "DVC_SYSTEM_CONFIG_DIR": str(home / "dvc-system-config"),
            "DVC_NO_ANALYTICS": "1",
            "BENTOML_HOME": str(home / "bentoml"),
            "BENTOML_DO_NOT_TRACK": "true",
            "GIT_AUTHOR_NAME": "pr2prod tests",
            "GIT_AUTHOR_EMAIL": "tests@pr2prod.invalid",
            "GIT_COMMITTER_NAME": "pr2prod tests",
            "GIT_COMMITTER_EMAIL": "tests@pr2prod.invalid",
            "GIT_CONFIG_NOSYSTEM": "1",
            # The stages run `pr2prod` and the tests run `dvc`: both from this environment.
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        }
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


def run(*command: str | Path, cwd: Path, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run a command in `cwd`; on an unexpected exit status, fail with its whole output."""
    result = subprocess.run(
        [str(part) for part in command], cwd=cwd, capture_output=True, text=True, check=False
    )
    if check and result.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, command))} exited {result.returncode}\n"
            f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
        )
    return result


def copy_project(destination: Path) -> Path:
    """A fresh clone of the project as it is in the working tree (committed or not)."""
    listed = run(
        "git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", cwd=REPO_ROOT
    )
    for name in filter(None, listed.stdout.split("\0")):
        source = REPO_ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    run("git", "init", "--quiet", "--initial-branch=main", cwd=destination)
    run("git", "add", "--all", cwd=destination)
    run("git", "commit", "--quiet", "-m", "fresh clone", cwd=destination)
    return destination


@pytest.fixture(scope="session")
def reproduced_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy with its data materialised and its pipeline reproduced once."""
    project = copy_project(tmp_path_factory.mktemp("reproduced"))
    run("pr2prod", "data", cwd=project)
    run("dvc", "repro", cwd=project)
    return project


@pytest.fixture(scope="session")
def reproduced_regression_project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project copy switched to the regression sample (data, schema.yaml and params.yaml
    only), its pipeline reproduced once."""
    project = copy_project(tmp_path_factory.mktemp("regression"))
    use_fixture_data(project, "regression")
    run("dvc", "add", "data", cwd=project)
    run("dvc", "repro", cwd=project)
    return project


@pytest.fixture(scope="session")
def regression_bento_tag(reproduced_regression_project: Path) -> str:
    """The bento `pr2prod bento` builds from the regression project's model."""
    output = run("pr2prod", "bento", cwd=reproduced_regression_project).stdout
    return output.split("bento ")[-1].split()[0]


@pytest.fixture
def project(reproduced_project: Path, tmp_path: Path) -> Path:
    """A private copy of the reproduced project (data, DVC cache and all) for one test."""
    return Path(shutil.copytree(reproduced_project, tmp_path / "project", symlinks=True))


@pytest.fixture(scope="session")
def bento_tag(reproduced_project: Path) -> str:
    """The bento `pr2prod bento` builds from the reproduced project's model."""
    output = run("pr2prod", "bento", cwd=reproduced_project).stdout
    return output.split("bento ")[-1].split()[0]


# Short canary windows for the tests that roll out (the defaults take ~90 s a rollout). At
# 50 requests/s a window still holds about 50 canary and 150 stable requests at 25 %, where
# identical models stay well inside the thresholds.
QUICK_CANARY = {
    "steps": [25, 50, 100],
    "window_seconds": 4,
    "min_requests": 30,
    "max_failures": 1,
    "max_inconclusive": 2,
    "progress_deadline_seconds": 120,
    "drain_seconds": 0.5,
    "readiness_timeout_seconds": 20,  # the bento is ready in ~5 s here
}


# `make run`'s rehearsal in the tests: QUICK_CANARY's windows, one step before promotion (the
# rollout tests go through every step). Half the traffic for a window still judges about
# 100 requests of each version.
QUICK_REHEARSAL = {**QUICK_CANARY, "steps": [50, 100]}


def use_fixture_data(project: Path, fixture: str) -> None:
    """Adapt `project` to a fixture's dataset as a user would: its data file in place of
    data/'s, its schema.yaml and params.yaml; nothing else changes."""
    folder = FIXTURES / fixture
    shutil.rmtree(project / "data", ignore_errors=True)  # a fresh copy has none yet
    (project / "data").mkdir()
    for data_file in folder.glob("*.csv"):
        shutil.copy(data_file, project / "data" / data_file.name)
    for name in ("schema.yaml", "params.yaml"):
        shutil.copy(folder / name, project / name)


def set_canary_profile(project: Path, changes: dict) -> None:
    """Change the `canary:` settings in the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params.setdefault("canary", {}).update(changes)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


@dataclass(frozen=True)
class Server:
    url: str
    log: Path
    pid: int


def start_server(
    command: list[str],
    cwd: Path,
    log: Path,
    port: int,
    timeout: float = 60,
    path="/readyz",
    env: dict[str, str] | None = None,
):
    """Start a server process (in `env`, default: this one's); return it once GET `path`
    answers 200."""
    with log.open("w") as handle:
        process = subprocess.Popen(
            command, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT, env=env
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, timeout, path, process=Watched.popen(process, log))
    except NotReady as error:
        stop_server(process)
        pytest.fail(f"{error}\n{error.hint}")
    return process, url


stop_server = stop_process  # by its PID: politely, then for sure


def assert_fuzzing_finds_no_server_error(url: str, workdir: Path) -> None:
    """schemathesis sends requests generated from the service's OpenAPI spec (valid and
    invalid ones); none may get a 5xx."""
    result = subprocess.run(
        [
            "schemathesis",
            "run",
            f"{url}/docs.json",
            "--checks",
            "not_a_server_error",
            "--max-examples",
            "40",
            "--seed",
            "1",
            "--no-color",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        cwd=workdir,  # schemathesis keeps a cache folder in its working directory
    )

    assert result.returncode == 0, result.stdout[-4000:]


@pytest.fixture(scope="session")
def served_bento(
    bento_tag: str, reproduced_project: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Server]:
    """The bento served by a real `bentoml serve` process for the whole session."""
    port = free_port()
    log = tmp_path_factory.mktemp("server") / "server.log"
    command = ["bentoml", "serve", bento_tag, "--host", "127.0.0.1", "--port", str(port)]
    process, url = start_server(command, reproduced_project, log, port)
    yield Server(url, log, process.pid)
    stop_server(process)


# Set by CI (.ci/run): a test that needs a system program must run, never skip.
REQUIRE_ALL = "PR2PROD_REQUIRE_ALL"


def system_program(name: str, how_to_install: str) -> str:
    """The path of a program the project cannot install itself (no PyPI or npm package).

    Missing, the test skips saying how to install it, so `make test` passes on a
    machine with only Python, make, git and npm; with PR2PROD_REQUIRE_ALL=1 (CI) it fails.
    """
    found = shutil.which(name)
    if found:
        return found
    reason = f"`{name}` is not installed; {how_to_install}"
    if os.environ.get(REQUIRE_ALL) == "1":
        pytest.fail(f"{reason} ({REQUIRE_ALL}=1 forbids skipping)")
    pytest.skip(reason)


def assert_refused_for_another_release(target: DeployTarget, running: str, other: str) -> None:
    """Each call that changes traffic, meant for `other` while `running` is the canary,
    is refused naming both (the caller checks that nothing changed)."""
    for call in (
        lambda: target.set_canary_weight(10, other),
        lambda: target.promote(other),
        lambda: target.abort_canary(other),
    ):
        with pytest.raises(Pr2prodError, match=f"is {re.escape(running)}, not") as refused:
            call()
        assert other in str(refused.value) and "make abort" in refused.value.hint


def assert_rehearsed_and_stopped(
    project: Path, out: str, divergence: str = "probability JS"
) -> None:
    """`make run`'s rehearsal promoted its canary with no client failure (its summary and
    windows table, whose `divergence` column a classifier's or regressor's windows have),
    then nothing left running: no state, no process of ours."""
    assert "rehearsal: starting pr2prod:" in out
    assert re.search(r"decision:\s+promoted after \d+ s", out), out
    canary = re.search(r"canary:\s+(pr2prod:\w+) \(model pr2prod-model:\w+\)", out)
    assert canary and re.search(rf"deployed:\s+{canary[1]}", out), out
    clients = re.search(r"client requests: (\d+) sent at 50/s, (\d+) failed", out)
    assert clients and int(clients[1]) > 200 and int(clients[2]) == 0, out
    assert divergence in out  # the windows table
    # The drift monitor's look at the deployed version, before everything stopped.
    monitoring = re.search(r"monitoring:\s+(.*)", out)
    assert monitoring and "🔴" not in monitoring[1] and "failed" not in monitoring[1], out
    rehearsal = project / "build" / "rehearsal"
    assert not (rehearsal / "deploy" / "local" / "state.json").exists()
    assert [process.pid for process in psutil.process_iter(["cmdline"])
            if str(rehearsal) in " ".join(process.info["cmdline"] or [])] == []  # fmt: skip
