"""Where per-row results live: in git, or only in DVC's cache and remote (private data).

dvc.yaml's schema is checked before params are interpolated, so an output's `cache:` flag
cannot follow a param: `privacy.per_row_files` in params.yaml says which one is meant, and
`pr2prod repro` refuses to run while dvc.yaml says otherwise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from pr2prod import paths
from pr2prod.errors import Pr2prodError
from pr2prod.settings import PrivacySettings

DVC_YAML = Path("dvc.yaml")
# Files with one line per row of the data. (The ROC and precision-recall curves are
# points of the curves, and metrics.json holds totals: neither has a row per person.)
PER_ROW_FILES = (paths.PREDICTIONS,)


def cached_outputs(dvc_yaml: str) -> dict[str, bool]:
    """Every stage output, metric and plot file in dvc.yaml -> whether DVC caches it."""
    flags: dict[str, bool] = {}
    for stage in (yaml.safe_load(dvc_yaml) or {}).get("stages", {}).values():
        for kind in ("outs", "metrics", "plots"):
            for entry in stage.get(kind) or []:
                flags.update(_flags(entry))
    return flags


def _flags(entry: Any) -> dict[str, bool]:
    if isinstance(entry, str):
        return {entry: True}  # DVC caches an output unless told not to
    return {path: bool((options or {}).get("cache", True)) for path, options in entry.items()}


def check_per_row_files(privacy: PrivacySettings, dvc_yaml: str) -> None:
    """Raise unless dvc.yaml keeps every per-row file where params.yaml says."""
    want_cached = privacy.per_row_files == "dvc"
    flags = cached_outputs(dvc_yaml)
    for path in PER_ROW_FILES:
        name = path.as_posix()
        if name in flags and flags[name] != want_cached:
            where = "only in DVC" if want_cached else "in git"
            edit = "cache: true" if want_cached else "cache: false"
            untrack = (
                f", then `git rm --cached {name}`" if want_cached else f", then `git add {name}`"
            )
            raise Pr2prodError(
                f"params.yaml says privacy.per_row_files: {privacy.per_row_files}, but "
                f"{DVC_YAML} does not keep {name} {where}",
                hint=f"in {DVC_YAML}, under `- {name}:`, set `{edit}`{untrack} and run "
                "`make repro` (docs/privacy.md)",
            )
