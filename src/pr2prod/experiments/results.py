"""What DVC recorded for each run of a sweep (`dvc exp show --json`), per experiment name."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Literal

from pr2prod import paths
from pr2prod.dvc_tools import run_dvc
from pr2prod.model.metrics import flatten_metrics

RunStatus = Literal["done", "failed", "running", "queued", "not run"]


@dataclass(frozen=True)
class RunRecord:
    """One experiment as DVC shows it; `rev` is its commit once it has one."""

    name: str
    status: RunStatus
    rev: str | None = None
    params: dict[str, Any] = field(default_factory=dict)  # params.yaml, as parsed
    metrics: dict[str, float] = field(default_factory=dict)  # results/metrics.json, flattened
    error: str = ""


def read_experiments(show_json: str, baseline: str) -> dict[str, RunRecord]:
    """The experiments of `baseline` (a full commit sha) in `dvc exp show --json` output."""
    records: dict[str, RunRecord] = {}
    for row in json.loads(show_json):
        if row.get("rev") != baseline:
            continue
        for experiment in row.get("experiments") or []:
            record = _record(experiment)
            if record is not None:
                records[record.name] = record
    return records


def show_experiments(baseline: str) -> dict[str, RunRecord]:
    """The experiments DVC knows on top of `baseline`."""
    return read_experiments(run_dvc("exp", "show", "--json").stdout, baseline)


def lookup(params: dict[str, Any], dotted: str) -> Any:
    """The value of a dotted parameter name in parsed params.yaml (None when absent)."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _record(experiment: dict[str, Any]) -> RunRecord | None:
    revs = experiment.get("revs") or []
    if not revs:
        return None
    rev = revs[0]
    name = rev.get("name") or experiment.get("name")
    if not name:
        return None
    data = rev.get("data") or {}
    params = ((data.get("params") or {}).get(paths.PARAMS.as_posix()) or {}).get("data") or {}
    metrics_file = (data.get("metrics") or {}).get(paths.METRICS.as_posix()) or {}
    metrics = flatten_metrics(metrics_file.get("data") or {})
    error = (rev.get("error") or {}).get("msg", "")
    state = ((experiment.get("executor") or {}).get("state")) or ""
    status: RunStatus
    if error or state == "failed":
        status = "failed"
    elif state in ("queued", "running"):
        status = state
    else:
        status = "done" if metrics else "failed"
        error = error or ("" if metrics else f"the run left no {paths.METRICS}")
    return RunRecord(name, status, rev.get("rev"), params, metrics, error)
