"""The pull request's report comment: one comment, the bot's own, edited in place.

`cml comment update` (CML 0.20.6) cannot keep that promise: it reads only the first page
(30) of a pull request's comments, so on a longer discussion it posts a second report, and
it takes any comment holding its watermark as its own, so it would edit a reviewer's
comment that quoted the report. Here every page is read, and a comment is the report only
when the token's bot wrote it and it starts with the watermark.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub
from pr2prod.github.sections import Section, merge_section

# Hidden in the rendered comment; the first line of every report comment this code writes.
WATERMARK = "<!-- pr2prod:report-comment -->"
# The login GitHub Actions' own token (`github.token`) posts as.
ACTIONS_BOT = "github-actions[bot]"
# A pull request number is a few digits; more than this is not one.
PR_NUMBER_MAX_BYTES = 32


@dataclass(frozen=True)
class Posted:
    """What `post_report_comment` did, and the comment's address."""

    action: Literal["created", "updated", "unchanged"]
    url: str


def with_watermark(body: str) -> str:
    """`body` as a report comment: the watermark on its first line, once."""
    text = body.removeprefix(WATERMARK).lstrip("\n")
    return f"{WATERMARK}\n{text}"


def is_report_comment(comment: dict[str, Any], author: str) -> bool:
    """The bot's own report: a quote of it by anyone else never counts."""
    body = comment.get("body") or ""
    return comment["user"]["login"] == author and body.startswith(WATERMARK)


def post_report_comment(
    github: GitHub, pr: int, body: str, author: str = ACTIONS_BOT, section: Section = "report"
) -> Posted:
    """Put `body` in `section` of the pull request's report comment, edited in place (its
    other section kept), or create the comment when there is none."""
    reports = [c for c in github.paginate(f"issues/{pr}/comments") if is_report_comment(c, author)]
    if not reports:
        text = with_watermark(merge_section("", section, body.removeprefix(WATERMARK)))
        created = github.post(f"issues/{pr}/comments", {"body": text})
        return Posted("created", created["html_url"])
    # The oldest one: the report reviewers have been reading since the first push.
    report = reports[0]
    current = report["body"].removeprefix(WATERMARK).lstrip("\n")
    text = with_watermark(merge_section(current, section, body.removeprefix(WATERMARK)))
    if report["body"] == text:
        return Posted("unchanged", report["html_url"])
    updated = github.patch(f"issues/comments/{report['id']}", {"body": text})
    return Posted("updated", updated["html_url"])


def pull_request_head(github: GitHub, pr: int) -> str:
    """The commit the pull request's branch points at now."""
    return str(github.get(f"pulls/{pr}")["head"]["sha"])


def parse_pr_number(text: str, where: str) -> int:
    """A pull request number from untrusted text (the report artifact is written by the PR)."""
    value = text.strip()
    if not re.fullmatch(r"[0-9]{1,10}", value) or int(value) == 0:
        raise Pr2prodError(
            f"{where} does not hold a pull request number: {value[:20]!r}",
            hint="the report artifact should hold the number pr.yml wrote; re-run pr.yml",
        )
    return int(value)


def read_pr_number(path: Path) -> int | None:
    """The number in `path`, or None when the file is not there (the report was not made)."""
    if path.is_symlink():
        raise Pr2prodError(f"{path} is a symbolic link", hint="the report artifact is not trusted")
    if not path.is_file():
        return None
    with path.open("rb") as file:
        head = file.read(PR_NUMBER_MAX_BYTES + 1)
    return parse_pr_number(head.decode("ascii", errors="replace"), str(path))


def dispatched_pr_number(title: str) -> int:
    """The pull request a manual sweep ran for, from its run title (`Sweep of PR #12`)."""
    match = re.search(r"#([0-9]{1,10})$", title.strip())
    if match is None:
        raise Pr2prodError(
            f"the run title {title[:60]!r} does not end with a pull request number",
            hint="sweep.yml's `run-name` must end with `#<number>`",
        )
    return parse_pr_number(match.group(1), "the run title")


def read_head_sha(path: Path) -> str:
    """The commit an artifact says it is about (empty when it says nothing usable)."""
    if path.is_symlink() or not path.is_file():
        return ""
    with path.open("rb") as file:
        text = file.read(PR_NUMBER_MAX_BYTES * 2).decode("ascii", errors="replace").strip()
    return text if re.fullmatch(r"[0-9a-f]{40}", text) else ""
