"""Every relative link in the documentation resolves, and README.md links every page."""

from __future__ import annotations

from pathlib import Path

import pytest
from doc_pages import DOCS, REPO_ROOT, anchors, links, name_of, pages

EXTERNAL = ("http://", "https://", "mailto:")


def relative_links(page: Path) -> list[str]:
    return [target for target in links(page) if not target.startswith(EXTERNAL)]


@pytest.mark.parametrize("page", pages(), ids=name_of)
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        destination = (page.parent / path).resolve() if path else page
        if not destination.exists():
            broken.append(f"{target}: no such file")
        elif anchor and destination.suffix == ".md" and anchor not in anchors(destination):
            broken.append(f"{target}: no heading for #{anchor}")

    assert broken == [], f"{name_of(page)}: {broken}"


def test_readme_links_every_page_in_docs() -> None:
    readme = REPO_ROOT / "README.md"
    linked = {(REPO_ROOT / target.partition("#")[0]).resolve() for target in links(readme)}

    assert [name_of(page) for page in sorted(DOCS.glob("*.md")) if page not in linked] == []
