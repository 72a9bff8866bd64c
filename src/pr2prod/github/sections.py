"""The report comment's sections: the PR report, then (when a sweep ran) the sweep's table.

Each workflow run updates its own section and keeps the other as the comment holds it,
so the pull request still has one comment. A section's text comes from a downloaded
artifact (untrusted): any section marker inside it is dropped, so it can never open or
overwrite another section.
"""

from __future__ import annotations

from typing import Literal

Section = Literal["report", "sweep"]
SECTIONS: tuple[Section, ...] = ("report", "sweep")
# Hidden in the rendered comment: where the sweep's table starts.
SWEEP_MARKER = "<!-- pr2prod:sweep -->"


def split_sections(body: str) -> dict[Section, str]:
    """The comment's body (after its watermark) as its report and sweep sections."""
    start = body.find(SWEEP_MARKER)
    if start < 0:
        return {"report": body, "sweep": ""}
    return {"report": body[:start], "sweep": body[start:]}


def merge_section(body: str, section: Section, text: str) -> str:
    """`body` with `section` replaced by `text`; the other section kept as it was."""
    sections = split_sections(body)
    clean = text.replace(SWEEP_MARKER, "")
    sections[section] = f"{SWEEP_MARKER}\n{clean.lstrip(chr(10))}" if section == "sweep" else clean
    parts = [sections[name].strip("\n") for name in SECTIONS if sections[name].strip()]
    return "\n\n".join(parts) + "\n"
