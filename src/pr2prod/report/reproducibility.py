"""Did CI reproduce what was committed? Compare the workspace with HEAD's dvc.lock and metrics."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from pr2prod import paths
from pr2prod.model.metrics import flatten_metrics
from pr2prod.report.revisions import read_at


@dataclass(frozen=True)
class Reproducibility:
    stages_run: list[str] | None  # None: `pr2prod repro` left no record
    seconds: float | None
    exit_status: int | None = None
    lock_differences: list[str] = field(default_factory=list)
    metric_differences: list[str] = field(default_factory=list)
    committed: bool = True  # False: HEAD has no dvc.lock to compare with

    @property
    def matches(self) -> bool:
        return self.committed and not self.lock_differences and not self.metric_differences


def check_reproducibility(record_path: Path) -> Reproducibility:
    record = json.loads(record_path.read_text()) if record_path.is_file() else {}
    committed_lock = read_at("HEAD", paths.DVC_LOCK)
    committed_metrics = read_at("HEAD", paths.METRICS)
    workspace_lock = read_at(None, paths.DVC_LOCK)
    workspace_metrics = read_at(None, paths.METRICS)
    return Reproducibility(
        stages_run=record.get("stages_run"),
        seconds=record.get("seconds"),
        exit_status=record.get("exit_status"),
        lock_differences=_lock_differences(committed_lock, workspace_lock),
        metric_differences=_metric_differences(committed_metrics, workspace_metrics),
        committed=committed_lock is not None,
    )


def _lock_differences(committed: str | None, workspace: str | None) -> list[str]:
    """'train: artifacts/model/model.joblib md5 1a2b3c4d -> 5e6f7a8b', one line per change."""
    if committed is None or workspace is None:
        return []
    before = _lock_entries(committed)
    after = _lock_entries(workspace)
    changes = []
    for key in sorted(before.keys() | after.keys()):
        if before.get(key) != after.get(key):
            changes.append(f"{key}: {_short(before.get(key))} -> {_short(after.get(key))}")
    return changes


def _lock_entries(text: str) -> dict[str, Any]:
    """{'train: outs artifacts/model/model.joblib': md5, 'train: params train': {...}, ...}"""
    entries: dict[str, Any] = {}
    for stage, body in (yaml.safe_load(text) or {}).get("stages", {}).items():
        for kind in ("deps", "outs"):
            for item in body.get(kind, []):
                entries[f"{stage}: {kind} {item['path']}"] = item.get("md5")
        for params_file, values in (body.get("params") or {}).items():
            entries[f"{stage}: params {params_file}"] = values
    return entries


def _short(value: Any) -> str:
    if value is None:
        return "(absent)"
    return value[:8] if isinstance(value, str) else json.dumps(value, sort_keys=True)


def _metric_differences(committed: str | None, workspace: str | None) -> list[str]:
    if committed is None or workspace is None:
        return []
    before = flatten_metrics(json.loads(committed))
    after = flatten_metrics(json.loads(workspace))
    return [
        f"{name}: committed {before.get(name)} -> reproduced {after.get(name)}"
        for name in sorted(before.keys() | after.keys())
        if before.get(name) != after.get(name)
    ]
