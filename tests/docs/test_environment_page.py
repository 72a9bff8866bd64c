"""docs/architecture.md lists the environment variables the package reads, and only those."""

from __future__ import annotations

import re

from doc_pages import DOCS, REPO_ROOT, code_spans, section, table_rows

from pr2prod.environment import VARIABLES

PAGE = DOCS / "architecture.md"
SOURCES = sorted((REPO_ROOT / "src").rglob("*.py"))
# os.environ["NAME"], os.environ.get("NAME"), os.getenv("NAME")
READ = re.compile(r"""(?:environ(?:\.get)?|getenv)\(?\[?\s*["']([A-Z][A-Z0-9_]*)["']""")


def documented() -> set[str]:
    return {code_spans(row[0])[0] for row in table_rows(section(PAGE, "Environment variables"))}


def test_every_variable_the_package_reads_is_documented() -> None:
    read = {name for path in SOURCES for name in READ.findall(path.read_text())}

    assert sorted(read - documented()) == []


def test_every_documented_variable_is_named_in_the_package() -> None:
    text = "\n".join(path.read_text() for path in SOURCES)

    assert sorted(name for name in documented() if f'"{name}"' not in text) == []


def test_the_page_lists_exactly_the_variables_table() -> None:
    assert documented() == {variable.name for variable in VARIABLES}
