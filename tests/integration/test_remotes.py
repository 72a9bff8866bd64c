"""DVC remotes end to end: push from one repository, `pr2prod data` in a real `git clone`.

Covers a local-directory remote, an S3-compatible remote (a local moto server) and the
rule that an unusable remote is a clear error, never a silent fall-back to the sample.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml
from conftest import REPO_ROOT, copy_project, run

from pr2prod.ports import free_port
from pr2prod.processes import stop_process
from pr2prod.readiness import Watched, wait_until_ready

pytestmark = pytest.mark.integration

DATA_FILE = Path("data") / "breast_cancer.csv"
MODEL_FILE = Path("artifacts") / "model" / "model.joblib"


def add_default_remote(repo: Path, name: str, url: str | Path) -> None:
    # Not --local: the remote goes into .dvc/config, which is committed, so clones see it.
    run("dvc", "remote", "add", "--default", name, str(url), cwd=repo)


def commit_all(repo: Path, message: str) -> None:
    run("git", "add", "--all", cwd=repo)
    run("git", "commit", "--quiet", "-m", message, cwd=repo)


def git_clone(origin: Path, destination: Path) -> Path:
    """A real `git clone`: only committed files arrive; the DVC cache and data/ do not."""
    run("git", "clone", "--quiet", str(origin), str(destination), cwd=origin.parent)
    assert not (destination / DATA_FILE).exists()
    return destination


def dvc_status(repo: Path, *args: str) -> object:
    return json.loads(run("dvc", "status", "--json", *args, cwd=repo).stdout or "null")


def pull_data_into_clone(origin: Path, clone: Path, remote: str) -> None:
    """`pr2prod data` in the clone must pull (not write the sample) the origin's exact bytes."""
    result = run("pr2prod", "data", cwd=clone)
    assert "pulled" in result.stdout
    assert remote in result.stdout
    assert (clone / DATA_FILE).read_bytes() == (origin / DATA_FILE).read_bytes()


# --- A local-directory remote ------------------------------------------------------------


def test_fresh_clone_pulls_data_and_pipeline_outputs_from_a_local_remote(
    project: Path, tmp_path: Path
) -> None:
    # An absolute path: DVC resolves relative local remotes against the config file's
    # directory, which is easy to get wrong across clones.
    store = tmp_path / "store"
    add_default_remote(project, "store", store)
    # Also records the reproduced pipeline (dvc.lock, results/) so the clone has its state.
    commit_all(project, "reproduce the pipeline; use the local remote")
    run("dvc", "push", cwd=project)
    assert dvc_status(project, "--cloud") == {}, "dvc push left something unpushed"

    clone = git_clone(project, tmp_path / "clone")
    pull_data_into_clone(project, clone, "store")

    run("dvc", "pull", cwd=clone)
    assert dvc_status(clone) == {}, "the clone's pipeline is not up to date after `dvc pull`"
    assert (clone / MODEL_FILE).read_bytes() == (project / MODEL_FILE).read_bytes()

    # Someone with write access to the remote swaps the model for a pickle of their own.
    marker = tmp_path / "the-payload-ran"
    poison_remote_model(clone, store, marker)
    ci_clone = git_clone(project, tmp_path / "ci-clone")
    configure_remote_as_ci_does(ci_clone, store)
    pulled = run("dvc", "pull", cwd=ci_clone, check=False)
    assert pulled.returncode != 0 and MODEL_FILE.as_posix() in pulled.stderr
    assert not (ci_clone / MODEL_FILE).exists()
    assert not marker.exists()


def model_md5(repo: Path) -> str:
    """The MD5 dvc.lock records for the model: the name of its object on any remote."""
    lock = yaml.safe_load((repo / "dvc.lock").read_text())
    (md5,) = {
        out["md5"]
        for stage in lock["stages"].values()
        for out in stage.get("outs", [])
        if out["path"] == MODEL_FILE.as_posix()
    }
    return md5


def write_payload_pickle(path: Path, marker: Path) -> None:
    """A pickle that touches `marker` when loaded: what an attacker would put on a remote."""
    payload = "\n".join(
        [
            "import joblib, pathlib",
            "class P:",
            "    def __reduce__(self):",
            f"        return (pathlib.Path.touch, (pathlib.Path({str(marker)!r}),))",
            f"joblib.dump(P(), {str(path)!r})",
        ]
    )
    subprocess.run([sys.executable, "-c", payload], check=True)


def poison_remote_model(repo: Path, store: Path, marker: Path) -> None:
    """Replace the remote's copy of the model with a pickle that touches `marker` if loaded."""
    md5 = model_md5(repo)
    stored = store / "files" / "md5" / md5[:2] / md5[2:]
    stored.chmod(0o644)
    write_payload_pickle(stored, marker)


def configure_remote_as_ci_does(repo: Path, url: str | Path, endpoint: str = "") -> None:
    """Run the set-up action's own "Configure the DVC remote" step in `repo`."""
    action = yaml.safe_load((REPO_ROOT / ".github/actions/setup/action.yml").read_text())
    (step,) = [s for s in action["runs"]["steps"] if s.get("name") == "Configure the DVC remote"]
    (repo / ".venv").symlink_to(Path(sys.prefix))
    env = {
        "AWS_ACCESS_KEY_ID": "a-key",
        "AWS_SECRET_ACCESS_KEY": "a-secret",
        **os.environ,
        "DVC_REMOTE_URL": str(url),
        "DVC_REMOTE_ENDPOINT_URL": endpoint,
    }
    subprocess.run(["bash", "-euo", "pipefail", "-c", step["run"]], cwd=repo, env=env, check=True)
    assert run("dvc", "remote", "default", cwd=repo).stdout.strip() == "ci"


# --- An unusable remote --------------------------------------------------------------------


@pytest.mark.parametrize("store_exists", [True, False], ids=["empty-dir", "missing-dir"])
def test_an_unusable_remote_is_a_clear_error_not_the_sample(
    tmp_path: Path, store_exists: bool
) -> None:
    store = tmp_path / "store"
    if store_exists:
        store.mkdir()
    origin = copy_project(tmp_path / "origin")
    add_default_remote(origin, "nowhere", store)
    commit_all(origin, "use a remote that holds nothing")
    # A clone, so that no DVC cache can quietly supply the data instead of the remote.
    clone = git_clone(origin, tmp_path / "clone")

    result = run("pr2prod", "data", cwd=clone, check=False)

    assert result.returncode == 2, result.stdout + result.stderr
    assert "'nowhere'" in result.stderr
    assert "dvc push" in result.stderr
    data_dir = clone / "data"
    assert not data_dir.exists() or not any(data_dir.iterdir()), "fell back to the sample"


# --- An S3-compatible remote (moto) --------------------------------------------------------

CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


@dataclass(frozen=True)
class S3Server:
    endpoint: str

    def client(self) -> Any:  # boto3 builds its client classes at run time
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
            aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
            region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        )


@pytest.fixture
def s3_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[S3Server]:
    """A moto S3 server on 127.0.0.1, with the fake credentials in the environment for DVC."""
    for name, value in CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    moto_server = Path(sys.executable).with_name("moto_server")
    log = tmp_path / "moto_server.log"
    with log.open("wb") as output:
        server = subprocess.Popen(
            [str(moto_server), "-H", "127.0.0.1", "-p", str(port)],
            stdout=output,
            stderr=subprocess.STDOUT,
            env=os.environ.copy(),
        )
    try:
        # moto's own API answers 200 once the server runs.
        watched = Watched.popen(server, log)
        wait_until_ready(endpoint, 20, path="/moto-api/data.json", process=watched)
        yield S3Server(endpoint)
    finally:
        stop_process(server)


def data_dir_md5(repo: Path) -> str:
    """The `.dir` hash data.dvc records: the object DVC must have pushed for data/."""
    record = yaml.safe_load((repo / "data.dvc").read_text())
    return record["outs"][0]["md5"]


def test_an_s3_remote_serves_clones_and_ci_refuses_a_model_swapped_on_it(
    project: Path, tmp_path: Path, s3_server: S3Server
) -> None:
    bucket = "pr2prod-test"
    s3 = s3_server.client()
    s3.create_bucket(Bucket=bucket)
    url = f"s3://{bucket}/dvcstore"
    add_default_remote(project, "s3store", url)
    run("dvc", "remote", "modify", "s3store", "endpointurl", s3_server.endpoint, cwd=project)
    commit_all(project, "reproduce the pipeline; use the S3 remote")
    run("dvc", "push", cwd=project)

    listing = s3.list_objects_v2(Bucket=bucket, Prefix="dvcstore/")
    # DVC 3 stores objects as files/md5/<first two hex digits>/<rest>.
    md5 = data_dir_md5(project)
    assert f"dvcstore/files/md5/{md5[:2]}/{md5[2:]}" in {e["Key"] for e in listing["Contents"]}
    pull_data_into_clone(project, git_clone(project, tmp_path / "clone"), "s3store")

    # An S3 remote is where `verify` decides: DVC trusts an object's name there unless told
    # to hash what it downloads, so the trusting clone below takes the swapped model.

    marker = tmp_path / "the-payload-ran"
    poisoned = tmp_path / "poisoned.joblib"
    write_payload_pickle(poisoned, marker)
    model = model_md5(project)
    s3.put_object(
        Bucket=bucket, Key=f"dvcstore/files/md5/{model[:2]}/{model[2:]}", Body=poisoned.read_bytes()
    )

    ci_clone = git_clone(project, tmp_path / "ci-clone")
    configure_remote_as_ci_does(ci_clone, url, s3_server.endpoint)
    pulled = run("dvc", "pull", cwd=ci_clone, check=False)
    assert pulled.returncode != 0 and MODEL_FILE.as_posix() in pulled.stderr
    assert not (ci_clone / MODEL_FILE).exists()

    trusting_clone = git_clone(project, tmp_path / "trusting-clone")
    run("dvc", "pull", cwd=trusting_clone, check=False)
    assert (trusting_clone / MODEL_FILE).read_bytes() == poisoned.read_bytes()
    assert not marker.exists()  # nothing here loads it; pr2prod's own loaders check dvc.lock
