"""The deployment history: one JSON line per decision, printed as a table by deploy-status."""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate


@dataclass(frozen=True)
class Decision:
    release: str
    decision: str  # promoted | rolled-back | first-deploy | manual-rollback
    reason: str
    previous: str | None  # the stable release before this decision
    git_sha: str | None = None
    model_version: str | None = None
    target: str = ""
    time: float = field(default_factory=time.time)
    windows: list[dict[str, Any]] = field(default_factory=list)  # the analyses that decided

    @property
    def successful(self) -> bool:
        """Did this decision leave `release` serving as stable?"""
        return self.decision in ("promoted", "first-deploy", "manual-rollback")


class History:
    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, decision: Decision) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a") as handle:
            handle.write(json.dumps(asdict(decision), sort_keys=True) + "\n")

    def decisions(self) -> list[Decision]:
        if not self.path.is_file():
            return []
        return [Decision(**json.loads(line)) for line in self.path.read_text().splitlines() if line]

    def good_releases(self) -> list[str]:
        """Releases that once served as stable after a successful decision, oldest first."""
        seen: list[str] = []
        for decision in self.decisions():
            if decision.successful and decision.release not in seen:
                seen.append(decision.release)
        return seen

    def table(self) -> str:
        rows = []
        for d in self.decisions():
            last = d.windows[-1] if d.windows else {}
            rows.append(
                [
                    time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(d.time)),
                    d.release,
                    d.model_version or "",
                    (d.git_sha or "")[:8],
                    d.decision,
                    len(d.windows),
                    _figure(last, "canary_error_rate", "{:.1%}"),
                    _figure(last, "canary_p99_ms", "{:.0f} ms"),
                    _figure(last, "class_divergence", "{:.3f}"),
                    d.reason,
                ]
            )
        headers = [
            "time", "release", "model", "commit", "decision", "windows",
            "canary 5xx", "canary p99", "class JS", "reason",
        ]  # fmt: skip
        return tabulate(rows, headers=headers) if rows else "no deployments yet"


def _figure(window: dict[str, Any], name: str, template: str) -> str:
    value = (window.get("figures") or {}).get(name)
    return "" if value is None else template.format(value)


def windows_table(windows: list[dict[str, Any]]) -> str:
    """The analysis windows of one rollout, canary against stable, one row per window."""
    rows = [
        [
            window.get("step", ""),
            f"{window.get('weight', '')}%",
            window.get("outcome", ""),
            _pair(window, "canary_requests", "stable_requests", "{:.0f}"),
            _pair(window, "canary_error_rate", "stable_error_rate", "{:.1%}"),
            _pair(window, "canary_p50_ms", "stable_p50_ms", "{:.0f} ms"),
            _pair(window, "canary_p99_ms", "stable_p99_ms", "{:.0f} ms"),
            _pair(window, "canary_model_p50_ms", "stable_model_p50_ms", "{:.0f} ms"),
            _figure(window, "class_divergence", "{:.3f}"),
            _figure(window, "probability_divergence", "{:.3f}"),
        ]
        for window in windows
    ]
    headers = [
        "step", "canary share", "outcome", "requests", "5xx", "p50", "p99", "model p50",
        "class JS", "probability JS",
    ]  # fmt: skip
    note = "(figures read canary / stable)"
    return f"{tabulate(rows, headers=headers)}\n{note}" if rows else "no analysis windows"


def _pair(window: dict[str, Any], canary: str, stable: str, template: str) -> str:
    first, second = _figure(window, canary, template), _figure(window, stable, template)
    return f"{first} / {second}" if first or second else ""
