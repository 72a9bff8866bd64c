"""The documentation as data: its pages, the shell commands in their fenced blocks, links."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DOCS = REPO_ROOT / "docs"

# Fenced blocks in these languages hold commands. In `console` blocks a command is a line
# starting with the `$ ` prompt (the rest is output); in the others every line is one.
SHELL_LANGUAGES = ("console", "bash", "sh")
FENCE = re.compile(r"^(?P<indent> *)(?P<fence>```+|~~~+)(?P<language>[\w-]*)\s*$")
LINK = re.compile(r"!?\[[^\]]*\]\((?P<target>[^)\s]+)\)")
HEADING = re.compile(r"^#{1,6}\s+(?P<title>.+?)\s*#*\s*$")
TABLE_RULE = re.compile(r"\|[\s:|-]+\|")


def pages() -> list[Path]:
    """README.md and every page in docs/ (not the sample report, which the code writes)."""
    return [REPO_ROOT / "README.md", *sorted(DOCS.glob("*.md"))]


def name_of(page: Path) -> str:
    return page.relative_to(REPO_ROOT).as_posix()


@dataclass(frozen=True)
class Command:
    page: str
    line: int
    text: str

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    lines: tuple[str, ...]

    @property
    def commands(self) -> list[Command]:
        if self.language not in SHELL_LANGUAGES:
            return []
        found, pending, start = [], "", 0
        for number, line in enumerate(self.lines, start=self.line + 1):
            if not pending:
                if self.language == "console":
                    if not line.startswith("$ "):
                        continue  # output
                    line = line[2:]
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                start = number
            if line.endswith("\\"):  # continued on the next line
                pending += line[:-1] + " "
                continue
            found.append(Command(self.page, start, without_comment(pending + line).strip()))
            pending = ""
        return found


def blocks(page: Path) -> list[Block]:
    """Every fenced block of the page, with the fence's indentation taken off its lines."""
    found: list[Block] = []
    lines = page.read_text().splitlines()
    opened: tuple[int, str, str, str] | None = None  # line, indent, fence, language
    body: list[str] = []
    for number, line in enumerate(lines, start=1):
        match = FENCE.match(line)
        if opened is None:
            if match:
                opened = (number, match["indent"], match["fence"], match["language"])
                body = []
            continue
        start, indent, fence, language = opened
        if match and match["fence"] == fence and not match["language"]:
            found.append(Block(name_of(page), start, language, tuple(body)))
            opened = None
        else:
            body.append(line.removeprefix(indent))
    return found


def commands() -> list[Command]:
    return [command for page in pages() for block in blocks(page) for command in block.commands]


def without_comment(line: str) -> str:
    """The line up to a shell comment: a `#` that starts a word outside quotes."""
    quote = None
    for index, char in enumerate(line):
        if quote:
            quote = None if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "#" and (index == 0 or line[index - 1].isspace()):
            return line[:index]
    return line


def outside_fences(page: Path) -> list[str]:
    """The page's lines, without its fenced blocks (fences included)."""
    fenced = set()
    for block in blocks(page):
        fenced.update(range(block.line, block.line + len(block.lines) + 2))
    lines = page.read_text().splitlines()
    return [line for number, line in enumerate(lines, start=1) if number not in fenced]


def links(page: Path) -> list[str]:
    """Link and image targets, outside code."""
    prose = re.sub(r"`[^`\n]*`", "", "\n".join(outside_fences(page)))
    return [match["target"] for match in LINK.finditer(prose)]


def anchors(page: Path) -> set[str]:
    """The anchors GitHub gives the page's headings."""
    found = set()
    for line in outside_fences(page):
        if match := HEADING.match(line):
            found.add(slug(match["title"]))
    return found


def slug(title: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", title.lower()).replace(" ", "-")


def code_spans(text: str) -> list[str]:
    return re.findall(r"`([^`\n]+)`", text)


def section(page: Path, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level or above."""
    pattern = rf"^## {re.escape(heading)}\s*$(?P<body>.*?)(?=^##? |\Z)"
    match = re.search(pattern, page.read_text(), re.MULTILINE | re.DOTALL)
    if match is None:
        raise AssertionError(f"{name_of(page)} has no section '## {heading}'")
    return match["body"]


def table_rows(text: str) -> list[list[str]]:
    """The body rows of the markdown tables in `text` (headers left out), as lists of cells."""
    lines = [line.strip() for line in text.splitlines()]
    rows = []
    for index, line in enumerate(lines):
        if not line.startswith("|") or TABLE_RULE.fullmatch(line):
            continue
        if index + 1 < len(lines) and TABLE_RULE.fullmatch(lines[index + 1]):
            continue  # a header: the rule under it follows
        rows.append([cell.strip() for cell in line.strip("|").split("|")])
    return rows


def find_block(page: str, first_command: str) -> Block:
    """The shell block of `page` whose first command is `first_command`."""
    for block in blocks(REPO_ROOT / page):
        if block.commands and block.commands[0].text == first_command:
            return block
    raise AssertionError(f"{page} has no shell block starting with `{first_command}`")
