"""One GitHub issue per drift alert: opened on drift, updated while it lasts, closed when it clears.

The issue is found by its label and a hidden marker in its body, so each run of the monitor
edits the same issue instead of opening another. A run with not enough data changes
nothing: it says nothing about whether drift has cleared.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pr2prod.github.api import GitHub

LABEL = "drift"
MARKER = "<!-- pr2prod drift monitor -->"


@dataclass(frozen=True)
class IssueAction:
    action: str  # "opened", "updated", "closed" or "none"
    number: int | None = None


def sync_drift_issue(
    github: GitHub, report: dict[str, Any], markdown: str, run_url: str = ""
) -> IssueAction:
    """Bring the drift issue in line with a drift report (drift.json and drift.md)."""
    issue = open_drift_issue(github)
    verdict = report["verdict"]
    footer = f"\n\n[The monitor run]({run_url})" if run_url else ""
    if verdict == "drift":
        body = f"{MARKER}\n{markdown}{footer}"
        title = drift_title(report)
        if issue is None:
            created = github.post("issues", {"title": title, "body": body, "labels": [LABEL]})
            return IssueAction("opened", created["number"])
        github.patch(f"issues/{issue['number']}", {"title": title, "body": body})
        return IssueAction("updated", issue["number"])
    if verdict == "no drift" and issue is not None:
        note = "The monitor finds no drift any more: closing." + footer
        github.post(f"issues/{issue['number']}/comments", {"body": note})
        github.patch(f"issues/{issue['number']}", {"state": "closed", "state_reason": "completed"})
        return IssueAction("closed", issue["number"])
    return IssueAction("none", None if issue is None else issue["number"])


def open_drift_issue(github: GitHub) -> dict[str, Any] | None:
    """The open issue the monitor keeps (labelled `drift`, with its marker), if any."""
    for issue in github.paginate("issues", state="open", labels=LABEL):
        # The issues listing includes pull requests; ours is an issue with the marker.
        if "pull_request" not in issue and MARKER in (issue.get("body") or ""):
            return issue
    return None


def drift_title(report: dict[str, Any]) -> str:
    """The issue's title, naming what drifted: inputs and predictions, then live metrics
    below the gate (concept drift)."""
    drifted = sorted(
        {
            finding["name"]
            for version in report["versions"]
            for finding in version["findings"]
            if finding["verdict"] == "drift"
        }
    ) + sorted(
        {
            f"live {finding['metric']}"
            for version in report["versions"]
            for finding in version.get("performance", [])
            if finding["verdict"] == "drift"
        }
    )
    named = ", ".join(drifted[:3]) + (f" and {len(drifted) - 3} more" if len(drifted) > 3 else "")
    return f"Drift in production traffic: {named}"
