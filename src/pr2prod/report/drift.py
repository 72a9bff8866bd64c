"""How the data moved between base and PR: per-feature population stability index (PSI).

PSI compares the share of rows in each bin (deciles of the base data for numeric
features, categories for categorical ones; missing values are a bin of their own).
Rule of thumb: under 0.1 stable, 0.1-0.2 moderate, over 0.2 a real shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from pr2prod.schema import FeatureSchema

_FLOOR = 1e-4  # keeps empty bins from making the index infinite


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    summary: str  # e.g. "median 13.4 -> 15.1" or "north 24% -> 40%"
    flagged: bool


def feature_drift(
    base: pd.DataFrame, head: pd.DataFrame, schema: FeatureSchema, threshold: float
) -> list[FeatureDrift]:
    """Drift of every feature present in both frames, largest first."""
    drifts = []
    for feature in schema.features:
        if feature.name not in base or feature.name not in head:
            continue
        if feature.is_numeric:
            before = pd.to_numeric(base[feature.name], errors="coerce")
            after = pd.to_numeric(head[feature.name], errors="coerce")
            psi = _psi(*_numeric_shares(before, after))
            summary = f"median {before.median():.4g} -> {after.median():.4g}"
        else:
            before, after = base[feature.name].astype("string"), head[feature.name].astype("string")
            shares_before, shares_after = _category_shares(before, after)
            psi = _psi(shares_before.to_numpy(), shares_after.to_numpy())
            moved = (shares_after - shares_before).abs().idxmax()
            summary = f"{moved} {shares_before[moved]:.0%} -> {shares_after[moved]:.0%}"
        drifts.append(FeatureDrift(feature.name, round(psi, 4), summary, psi > threshold))
    return sorted(drifts, key=lambda drift: drift.psi, reverse=True)


def label_shares(frame: pd.DataFrame, target: str) -> dict[str, float]:
    if target not in frame:
        return {}
    shares = frame[target].astype("string").value_counts(normalize=True, dropna=False)
    return {str(label): float(share) for label, share in shares.items()}


def _numeric_shares(before: pd.Series, after: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    edges = np.unique(np.nanquantile(before.to_numpy(dtype=float), np.linspace(0, 1, 11)))
    edges[0], edges[-1] = -np.inf, np.inf

    def shares(values: pd.Series) -> np.ndarray:
        present = values.dropna().to_numpy(dtype=float)
        counts = np.histogram(present, bins=edges)[0] if len(edges) > 1 else [len(present)]
        return np.append(counts, values.isna().sum()) / max(len(values), 1)

    return shares(before), shares(after)


def _category_shares(before: pd.Series, after: pd.Series) -> tuple[pd.Series, pd.Series]:
    shares_before = before.fillna("(missing)").value_counts(normalize=True)
    shares_after = after.fillna("(missing)").value_counts(normalize=True)
    categories = shares_before.index.union(shares_after.index)
    return (
        shares_before.reindex(categories, fill_value=0.0),
        shares_after.reindex(categories, fill_value=0.0),
    )


def _psi(before: np.ndarray, after: np.ndarray) -> float:
    before, after = np.maximum(before, _FLOOR), np.maximum(after, _FLOOR)
    return float(np.sum((after - before) * np.log(after / before)))
