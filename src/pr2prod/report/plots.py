"""The report's pictures: base and PR curves overlaid, confusion matrices side by side; for
a numeric target, predicted against actual values and the residuals' distributions."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.figure import Figure  # no pyplot: no global state, no display needed

STYLES = {"base": {"color": "#888888", "linestyle": "--"}, "PR": {"color": "#1f77b4"}}


def curve_plot(
    curves: dict[str, str | None], x: str, y: str, title: str, labels: tuple[str, str], out: Path
) -> Path:
    """Overlay one CSV curve per revision ({"base": text, "PR": text}); missing ones are skipped."""
    figure = Figure(figsize=(4.5, 4), dpi=100)
    axes = figure.subplots()
    for name, text in sorted(curves.items(), reverse=True):  # PR first: dashed base on top
        if text:
            frame = pd.read_csv(io.StringIO(text))
            axes.plot(frame[x], frame[y], label=name, linewidth=1.8, **STYLES[name])
    axes.set(title=title, xlabel=labels[0], ylabel=labels[1], xlim=(0, 1), ylim=(0, 1.02))
    axes.grid(alpha=0.3)
    axes.legend(loc="lower right" if x == "fpr" else "lower left")
    return _save(figure, out)


def predicted_vs_actual_plot(residuals: dict[str, str | None], out: Path) -> Path:
    """Each revision's test predictions against the true values, on the line of perfect
    predictions ({"base": residuals.csv text, "PR": ...}; missing ones are skipped)."""
    figure = Figure(figsize=(4.5, 4), dpi=100)
    axes = figure.subplots()
    frames = _frames(residuals)
    for name, frame in frames.items():
        axes.scatter(frame["actual"], frame["predicted"], s=12, alpha=0.6, label=name,
                     color=STYLES[name]["color"])  # fmt: skip
    values = pd.concat([frame[["actual", "predicted"]] for frame in frames.values()])
    low, high = float(values.min().min()), float(values.max().max())
    axes.plot([low, high], [low, high], color="black", linewidth=0.8)
    axes.set(title="Predicted vs actual", xlabel="actual", ylabel="predicted")
    axes.grid(alpha=0.3)
    axes.legend(loc="upper left")
    return _save(figure, out)


def residuals_plot(residuals: dict[str, str | None], out: Path) -> Path:
    """The distribution of each revision's residuals (actual minus predicted), overlaid."""
    figure = Figure(figsize=(4.5, 4), dpi=100)
    axes = figure.subplots()
    frames = _frames(residuals)
    edges = np.histogram_bin_edges(
        pd.concat([frame["residual"] for frame in frames.values()]), bins=20
    )
    for name, frame in frames.items():
        axes.hist(frame["residual"], bins=edges, histtype="step", linewidth=1.8, label=name,
                  **STYLES[name])  # fmt: skip
    axes.axvline(0, color="black", linewidth=0.8)
    axes.set(title="Residuals", xlabel="actual minus predicted", ylabel="test rows")
    axes.legend(loc="upper right")
    return _save(figure, out)


def _frames(texts: dict[str, str | None]) -> dict[str, pd.DataFrame]:
    """PR first, so that the dashed base is drawn on top."""
    return {
        name: pd.read_csv(io.StringIO(text))
        for name, text in sorted(texts.items(), reverse=True)
        if text
    }


def confusion_plot(matrices: dict[str, pd.DataFrame | None], out: Path) -> Path:
    """Confusion matrices (rows: actual, columns: predicted) of each revision, side by side."""
    present = {name: matrix for name, matrix in matrices.items() if matrix is not None}
    figure = Figure(figsize=(4 * len(present), 3.6), dpi=100)
    all_axes = figure.subplots(1, len(present))
    for axes, (name, matrix) in zip(_as_list(all_axes), present.items(), strict=True):
        axes.imshow(matrix.to_numpy(), cmap="Blues")
        axes.set_xticks(range(len(matrix.columns)), matrix.columns)
        axes.set_yticks(range(len(matrix.index)), matrix.index)
        axes.set(title=name, xlabel="predicted", ylabel="actual")
        peak = matrix.to_numpy().max()
        for row, actual in enumerate(matrix.index):
            for column, predicted in enumerate(matrix.columns):
                count = int(matrix.loc[actual, predicted])
                colour = "white" if count > peak / 2 else "black"
                axes.text(column, row, str(count), ha="center", va="center", color=colour)
    return _save(figure, out)


def confusion_matrix(predictions_text: str, classes: list[str]) -> pd.DataFrame:
    frame = pd.read_csv(io.StringIO(predictions_text), dtype=str)
    return pd.crosstab(frame["actual"], frame["predicted"]).reindex(
        index=classes, columns=classes, fill_value=0
    )


def _as_list(axes) -> list:
    return list(axes) if hasattr(axes, "__len__") else [axes]


def _save(figure: Figure, out: Path) -> Path:
    out.parent.mkdir(parents=True, exist_ok=True)
    figure.tight_layout()
    # No software stamp in the file, so the same figures give the same bytes.
    figure.savefig(out, format="png", metadata={"Software": None})
    return out
