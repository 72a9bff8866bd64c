"""What the deploy job tells its reader: the markdown of its summary page on GitHub.

A rehearsal says first, in its heading, that nothing reached production; a production
deploy names the image it rolled out. Both end with `deploy-status` (what runs, and the
history), so the page answers "what serves now, and why".
"""

from __future__ import annotations

from dataclasses import dataclass

# Step outcomes, as GitHub Actions reports them (`steps.<id>.outcome`).
OUTCOMES = ("success", "failure", "cancelled", "skipped", "")
# After a failed rehearsal: did the stable release it started from still serve?
CHECKS = ("passed", "failed", "none", "")

REHEARSAL_HEADING = (
    "## Rehearsal: the canary ran on this runner with the local target; "
    "nothing was deployed to production"
)


@dataclass(frozen=True)
class DeployJob:
    target: str  # local | kubernetes
    release: str  # the bento tag (rehearsal) or the image reference (kubernetes)
    outcome: str  # of the rollout step
    previous: str = ""  # the stable release a rehearsal started from ("" for a first deploy)
    state_run: str = ""  # the run whose saved state a rehearsal started from
    check: str = ""  # the stable check after a failed rehearsal
    namespace: str = ""
    superseded_by: str = ""  # main's newer commit, when this run left the rollout to its run


def _rollout_line(job: DeployJob) -> str:
    if job.superseded_by:
        return (
            f"- Rollout: none: main is at `{job.superseded_by}` now, a newer commit whose own "
            "run deploys it (and contains this one)."
        )
    if job.outcome == "skipped" and job.previous == job.release:
        return f"- Rollout: none needed: `{job.release}` already served as stable."
    return {
        "success": "- Rollout: `make deploy` succeeded (its decision is in the history below).",
        "failure": "- Rollout: `make deploy` failed: rolled back or stopped (see the history "
        "below and the step's log).",
        "cancelled": "- Rollout: cancelled midway; the rollback job ends any canary.",
    }.get(job.outcome, "- Rollout: not reached (an earlier step failed).")


def _rehearsal_lines(job: DeployJob) -> list[str]:
    lines = [
        REHEARSAL_HEADING,
        "",
        f"DEPLOY_TARGET is not `kubernetes`, so this job rehearsed the rollout of "
        f"`{job.release}` (the bento in the pushed image) with the router and both versions "
        "as processes on the runner, under synthetic traffic. They stopped with this job. "
        "Set DEPLOY_TARGET to `kubernetes` to deploy for real (docs/github-setup.md).",
        "",
    ]
    if job.previous:
        lines.append(
            f"- Stable at the start: `{job.previous}`, the release the previous rehearsal "
            f"left serving (deploy-state-local of run {job.state_run or 'unknown'})."
        )
    else:
        lines.append(
            "- Stable at the start: none, so this was a first deploy: no earlier "
            "rehearsal's state could be used (see the warnings, if any)."
        )
    lines.append(_rollout_line(job))
    lines.extend(
        {
            "passed": ["- After the failure: the stable release still serves (its /readyz "
                       "through the router)."],
            "none": ["- After the failure: no stable version; a failed first deploy leaves "
                     "nothing to serve."],
            "failed": ["- After the failure: **stable does not serve**."],
        }.get(job.check, [])
    )  # fmt: skip
    return lines


def _production_lines(job: DeployJob) -> list[str]:
    return [
        f"## Production (Kubernetes, namespace `{job.namespace}`)",
        "",
        f"- Release: `{job.release}`",
        _rollout_line(job),
    ]


def render(job: DeployJob, status: str) -> str:
    """The summary: what happened, then `status` (deploy-status's text) as a code block."""
    lines = _rehearsal_lines(job) if job.target == "local" else _production_lines(job)
    return "\n".join([*lines, "", "```", status.rstrip(), "```", ""])
