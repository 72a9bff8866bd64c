"""docs/renaming.md names a place for every tracked file that holds the name `pr2prod`."""

from __future__ import annotations

import subprocess

from doc_pages import DOCS, REPO_ROOT, code_spans


def test_every_file_holding_the_name_is_covered_by_the_page() -> None:
    holding = subprocess.run(
        ["git", "grep", "-l", "-I", "-i", "pr2prod"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    places = set(code_spans((DOCS / "renaming.md").read_text()))

    def covered(path: str) -> bool:
        return any(
            path == place or (place.endswith("/") and path.startswith(place)) for place in places
        )

    assert [path for path in holding if not covered(path)] == []
