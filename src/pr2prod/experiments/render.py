"""The sweep's table as markdown (a section of the PR comment) and as JSON (for machines)."""

from __future__ import annotations

import dataclasses
import json

from pr2prod.experiments.table import MetricCell, RunRow, SweepTable
from pr2prod.github.sections import SWEEP_MARKER

NONE = "n/a"


def table_json(table: SweepTable) -> str:
    return json.dumps(dataclasses.asdict(table), indent=2, sort_keys=True) + "\n"


def table_markdown(table: SweepTable) -> str:
    rows = table.rows
    done = sum(row.status == "done" for row in rows)
    failed = [row for row in rows if row.status != "done"]
    best = next((row for row in rows if row.best), None)
    title = f"## Sweep: {len(rows)} runs, {done} done, {len(failed)} failed or missing"
    title += f"; best: `{best.name}`" if best else "; no run qualifies as best"
    compared = "No base revision to compare with"
    if table.base_revision and table.base_sha:
        compared = f"Compared with `{table.base_revision}` ({table.base_sha[:8]})"
    lines = [
        SWEEP_MARKER,
        title,
        "",
        f"{compared}; the runs are DVC experiments on `{table.baseline[:8]}`. "
        f"Best run: {table.best_rule}. Each metric shows the run's value, its change "
        f"against the base and the {table.confidence:.0%} interval of that change.",
        "",
        *_grid(table),
    ]
    if table.interval_note:
        lines += ["", f"_Intervals: {table.interval_note}. An interval including zero is noise._"]
    gate_failed = [row for row in rows if row.gate_passed is False]
    if gate_failed:
        lines += ["", "### Gate failures", ""]
        lines += [f"- `{row.name}`: {'; '.join(row.gate_failures)}" for row in gate_failed]
    if failed:
        lines += ["", "### Runs that did not finish", ""]
        for row in failed:
            lines += [f"- `{row.name}` ({_params_text(row)}): {row.status}: {row.why}"]
            if row.log_tail:
                lines += ["", "  ```text", *[f"  {text}" for text in row.log_tail], "  ```"]
    return "\n".join(lines) + "\n"


def _grid(table: SweepTable) -> list[str]:
    names = list(table.rows[0].params) if table.rows else []
    short = _short_names(names)
    header = ["run", *[f"`{short[name]}`" for name in names], *table.metrics, "gate"]
    align = ["---", *["--:"] * len(names), *[":-:"] * len(table.metrics), ":-:"]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(align) + "|"]
    for row in table.rows:
        run = f"**{row.name}** 🏆" if row.best else row.name
        cells = [run, *[row.params[name] for name in names]]
        if row.status == "done":
            cells += [_metric(row.metrics[name]) for name in table.metrics]
            cells.append("✅ passes" if row.gate_passed else "❌ fails")
        else:
            cells += [""] * len(table.metrics) + [f"⚠️ {row.status}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _metric(cell: MetricCell) -> str:
    if cell.value is None:
        return NONE
    text = f"{cell.value:.4f}"
    if cell.delta is not None:
        text += f" ({cell.delta:+.4f}"
        if cell.interval is not None:
            low, high = cell.interval
            text += f", [{low:+.4f}, {high:+.4f}]"
        text += ")"
    return text


def _short_names(names: list[str]) -> dict[str, str]:
    """Each dotted parameter by its last part, unless two swept parameters share it."""
    leaves = [name.rsplit(".", 1)[-1] for name in names]
    return {
        name: leaf if leaves.count(leaf) == 1 else name
        for name, leaf in zip(names, leaves, strict=True)
    }


def _params_text(row: RunRow) -> str:
    return ", ".join(f"{name}={value}" for name, value in row.params.items())
