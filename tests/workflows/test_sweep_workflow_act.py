"""The sweep workflow (.github/workflows/sweep.yml), run by act for a labelled pull request.

The same set-up as test_pr_workflow_act.py: a temporary repository whose branch `pr`
declares a two-run sweep (one run cannot train), act running the job on this machine with
stubbed remote actions, and the uploaded `pr-sweep` artifact read back.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import test_pr_workflow_act
import yaml
from conftest import run
from test_pr_workflow_act import (
    PR_NUMBER,
    STUBS,
    clone_for_the_runner,
    commit_all,
    failed_steps,
    run_act,
    sha,
)

from pr2prod.github.sections import SWEEP_MARKER

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
WORKFLOW = Path(".github/workflows/sweep.yml")


def declare_sweep(repo: Path) -> None:
    """main as copied; branch `pr` declares a small sweep whose second run fails."""
    commit_all(repo, "base")
    run("git", "checkout", "--quiet", "-b", "pr", cwd=repo)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["sweep"] = {
        "params": {
            "train.hyperparameters.n_estimators": [10],
            "train.hyperparameters.max_depth": [4, 0],
        },
        "workers": 2,
    }
    params["report"]["bootstrap_resamples"] = 100
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    commit_all(repo, "declare a sweep")


def labelled_event(repo: Path, path: Path) -> Path:
    pull_request = {
        "number": PR_NUMBER,
        "title": "Try more trees",
        "labels": [{"name": "sweep"}],
        "head": {"ref": "pr", "sha": sha(repo, "pr")},
        "base": {"ref": "main", "sha": sha(repo, "main")},
    }
    event = {
        "action": "labeled",
        "label": {"name": "sweep"},
        "number": PR_NUMBER,
        "pull_request": pull_request,
    }
    path.write_text(json.dumps(event))
    return path


def test_a_labelled_pull_request_uploads_the_sweeps_table(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Two experiments, each in its own copy of the repository: more than a report's time.
    monkeypatch.setattr(test_pr_workflow_act, "ACT_TIMEOUT_SECONDS", 900)
    declare_sweep(project)
    work = tmp_path / "act"
    work.mkdir()
    event = labelled_event(project, work / "event.json")
    checkout = clone_for_the_runner(project, work / "checkout")

    # A checkout with a `ref` is one act does not do itself: the stub clones the checkout.
    [checkout_uses] = [
        s["uses"]
        for s in yaml.safe_load((ROOT / WORKFLOW).read_text())["jobs"]["sweep"]["steps"]
        if "actions/checkout" in s.get("uses", "")
    ]
    stub = STUBS / "actions" / "checkout"
    options = (
        *("--local-repository", f"{checkout_uses.split()[0]}={stub}"),
        *("--env", f"PR2PROD_TEST_CHECKOUT={checkout}"),
    )

    act = run_act(checkout, event, work, workflow=WORKFLOW, job="sweep", options=options)

    assert act.returncode == 0, act.output
    assert failed_steps(act.output) == [], act.output
    table = act.artifact("pr-sweep")
    assert (table / "pr-number").read_text() == f"{PR_NUMBER}\n"
    assert (table / "head-sha").read_text() == f"{sha(project, 'pr')}\n"
    markdown = (table / "sweep.md").read_text()
    assert markdown.startswith(SWEEP_MARKER)
    assert f"Compared with `{sha(project, 'main')}` ({sha(project, 'main')[:8]})" in markdown
    assert "| **sweep-1** 🏆 |" in markdown
    assert "| sweep-2 |" in markdown and "⚠️ failed" in markdown
