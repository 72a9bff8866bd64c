"""The deployment history: one JSON line per decision, printed as a table by deploy-status.

The format is described in docs/deploy-history.md. A history outlives the code that
wrote it (the Kubernetes target keeps it in a ConfigMap on the cluster, the local target in
.deploy/), so reading is tolerant: a key
this version does not know is ignored, and a figure an older version did not measure is
simply absent from `figures`.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tabulate import tabulate

from pr2prod.deploy.analysis import Analysis, Outcome
from pr2prod.deploy.records import Record, as_record

logger = logging.getLogger("pr2prod.deploy")

# Decisions that leave their release serving as stable: what `make rollback` may return to.
SUCCESSFUL = ("promoted", "first-deploy", "manual-rollback")


@dataclass(frozen=True)
class WindowRecord:
    """One analysis window of a rollout, as judged."""

    step: int  # 1-based, counting the steps before 100% only
    weight: int  # the canary's share of the traffic, in percent
    outcome: Outcome
    reasons: tuple[str, ...]  # human sentences: why it failed, held, or passed
    # analysis.window_figures (None where there was nothing to measure); empty when the
    # window ended before its figures were read (an early failure, an unreachable version)
    figures: Mapping[str, float | None]

    @classmethod
    def judged(cls, step: int, weight: int, analysis: Analysis) -> WindowRecord:
        return cls(step, weight, analysis.outcome, tuple(analysis.reasons), analysis.figures)

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "weight": self.weight,
            "outcome": self.outcome,
            "reasons": list(self.reasons),
            "figures": dict(self.figures),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> WindowRecord:
        return cls(
            step=int(data["step"]),
            weight=int(data["weight"]),
            outcome=data["outcome"],
            reasons=tuple(data.get("reasons", ())),
            figures=dict(data.get("figures") or {}),
        )


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
    windows: tuple[WindowRecord, ...] = ()  # the analyses that decided, in order

    @property
    def successful(self) -> bool:
        """Did this decision leave `release` serving as stable?"""
        return self.decision in SUCCESSFUL

    def to_json(self) -> dict[str, Any]:
        return {
            "release": self.release,
            "decision": self.decision,
            "reason": self.reason,
            "previous": self.previous,
            "git_sha": self.git_sha,
            "model_version": self.model_version,
            "target": self.target,
            "time": self.time,
            "windows": [window.to_json() for window in self.windows],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Decision:
        return cls(
            release=data["release"],
            decision=data["decision"],
            reason=data["reason"],
            previous=data["previous"],
            git_sha=data.get("git_sha"),
            model_version=data.get("model_version"),
            target=data.get("target", ""),
            time=float(data["time"]),
            windows=tuple(WindowRecord.from_json(window) for window in data.get("windows", ())),
        )


class History:
    def __init__(self, where: Path | Record) -> None:
        self.record = as_record(where)

    @staticmethod
    def line(decision: Decision) -> str:
        """`decision` as the history holds it: one JSON object, one line."""
        return json.dumps(decision.to_json(), sort_keys=True) + "\n"

    def append(self, decision: Decision) -> None:
        line = self.line(decision)
        limit = self.record.max_chars

        def appended(text: str | None) -> str:
            lines = (text or "").splitlines(keepends=True)
            if lines and not lines[-1].endswith("\n"):
                # A torn last line stays (and is reported when read), but on a line of its
                # own: glued to it, this decision would be lost too.
                lines[-1] += "\n"
            lines.append(line)
            # Where space is bounded the oldest decisions go first; the newest always stays.
            while limit and len(lines) > 1 and sum(map(len, lines)) > limit:
                lines.pop(0)
            return "".join(lines)

        self.record.update(appended)

    def decisions(self) -> list[Decision]:
        """Every decision that reads back, oldest first.

        A line that does not (a write cut short by a crash, a hand edit) is skipped with a
        warning naming it: one bad line must not stop `make rollback` or `make deploy-status`,
        nor hide the decisions around it.
        """
        decisions = []
        text = self.record.read() or ""
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                decisions.append(Decision.from_json(json.loads(line)))
            except (ValueError, KeyError, TypeError, AttributeError) as error:
                torn = number == text.count("\n") + 1  # the last line, with no line end
                what = "a torn last line (a write cut short)" if torn else "not a decision"
                logger.warning(
                    "warning: skipped %s:%d: %s (%r); repair or delete that line "
                    "(see docs/deploy-history.md)",
                    self.record.name, number, what, error,
                )  # fmt: skip
        return decisions

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
            last = d.windows[-1].figures if d.windows else {}
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
                    # A classifier's predicted classes, or a regressor's predicted values.
                    _figure(last, "class_divergence", "{:.3f}")
                    or _figure(last, "value_divergence", "{:.3f}"),
                    d.reason,
                ]
            )
        headers = [
            "time", "release", "model", "commit", "decision", "windows",
            "canary 5xx", "canary p99", "prediction JS", "reason",
        ]  # fmt: skip
        return tabulate(rows, headers=headers) if rows else "no deployments yet"


def _figure(figures: Mapping[str, float | None], name: str, template: str) -> str:
    value = figures.get(name)
    return "" if value is None else template.format(value)


DIVERGENCE_HEADERS = {
    "class_divergence": "class JS",
    "probability_divergence": "probability JS",
    "value_divergence": "value JS",
}


def windows_table(windows: Sequence[WindowRecord]) -> str:
    """The analysis windows of one rollout, canary against stable, one row per window."""
    # A regressor's windows have a value divergence, a classifier's the other two.
    regressor = any(window.figures.get("value_divergence") is not None for window in windows)
    divergences = (
        ["value_divergence"] if regressor else ["class_divergence", "probability_divergence"]
    )
    rows = [
        [
            window.step,
            f"{window.weight}%",
            window.outcome,
            _pair(window.figures, "canary_requests", "stable_requests", "{:.0f}"),
            _pair(window.figures, "canary_error_rate", "stable_error_rate", "{:.1%}"),
            _pair(window.figures, "canary_p50_ms", "stable_p50_ms", "{:.0f} ms"),
            _pair(window.figures, "canary_p99_ms", "stable_p99_ms", "{:.0f} ms"),
            _pair(window.figures, "canary_model_p50_ms", "stable_model_p50_ms", "{:.0f} ms"),
            *(_figure(window.figures, name, "{:.3f}") for name in divergences),
        ]
        for window in windows
    ]
    headers = [
        "step", "canary share", "outcome", "requests", "5xx", "p50", "p99", "model p50",
        *(DIVERGENCE_HEADERS[name] for name in divergences),
    ]  # fmt: skip
    note = "(figures read canary / stable)"
    return f"{tabulate(rows, headers=headers)}\n{note}" if rows else "no analysis windows"


def _pair(figures: Mapping[str, float | None], canary: str, stable: str, template: str) -> str:
    first, second = _figure(figures, canary, template), _figure(figures, stable, template)
    return f"{first} / {second}" if first or second else ""
