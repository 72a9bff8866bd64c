"""The text of the report comment, made from the downloaded report (untrusted data).

The report's markdown links its plots as `plots/<name>.png`. A comment can only show an
image hosted somewhere, so in `publish` mode each plot is uploaded (by CML, to its public
asset host) and linked by its address. Whatever goes wrong there (no verified CML, the
host refusing, an odd answer) the comment still goes out, text only, saying why: a lost
image must never cost the report. Only regular files under plots/ with plain names are
read; a path written in the markdown is never followed.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
from collections.abc import Callable
from pathlib import Path

from pr2prod.errors import Pr2prodError

IMAGE_MODES = ("publish", "none")
PLOT_NAME = re.compile(r"[A-Za-z0-9_.-]+\.png")
PUBLISHED_URL = re.compile(r"https://[^\s()<>\"']+")
IMAGE_LINK = re.compile(r"!\[[^\]]*\]\([^)]*\)")
SHA256 = re.compile(r"[0-9a-f]{64}")
PUBLISH_TIMEOUT_SECONDS = 120
# The report is a few kilobytes; a bigger file is not one pr.yml wrote.
REPORT_MAX_BYTES = 200_000

Publisher = Callable[[Path], str]


class PublishError(Exception):
    """An image could not be published; the comment goes out without images."""


def report_comment(report_dir: Path, images: str, publish: Publisher | None) -> str:
    """The comment for the report in `report_dir`, with its plots published when possible."""
    markdown = read_report(report_dir / "report.md")
    if images == "none":
        return text_only(
            markdown,
            "Images are not posted (PR2PROD_COMMENT_IMAGES=none, the default for "
            "private repositories)",
        )
    if publish is None:
        return text_only(markdown, "No verified image publisher was available")
    try:
        return with_published_plots(markdown, report_dir / "plots", publish)
    except PublishError as error:
        print(f"comment-body: the plots could not be published, posting text only: {error}")
        return text_only(markdown, f"The plots could not be published: {error}")


def missing_report_comment(run_url: str, head_sha: str) -> str:
    """What the comment says when pr.yml ended before it uploaded a report."""
    return _missing("pr2prod report", "The report", "the PR report workflow", run_url, head_sha)


def missing_sweep_comment(run_url: str, head_sha: str) -> str:
    """What the sweep's section says when its run ended before it uploaded a table."""
    return _missing("Sweep", "The sweep's table", "the sweep workflow", run_url, head_sha)


def _missing(title: str, what: str, workflow: str, run_url: str, head_sha: str) -> str:
    commit = f" for `{head_sha[:8]}`" if head_sha else ""
    run = f"[its run]({run_url})" if run_url else "its run"
    return (
        f"## {title}\n\n"
        f"{what} could not be produced{commit}: {workflow} ended before "
        f"uploading it; {run} shows which step failed.\n"
    )


def read_report(path: Path) -> str:
    if path.is_symlink() or not path.is_file():
        raise Pr2prodError(
            f"{path} is missing or not a regular file",
            hint="download the pr-report artifact of a pr.yml run that reached `make report`",
        )
    if path.stat().st_size > REPORT_MAX_BYTES:
        raise Pr2prodError(f"{path} is larger than a report", hint="the artifact is not trusted")
    return path.read_text(encoding="utf-8", errors="replace")


def text_only(markdown: str, why: str) -> str:
    """The report without image links, ending with why and where the plots are."""
    stripped = IMAGE_LINK.sub("", markdown).rstrip("\n")
    return f"{stripped}\n\n_{why}; the plots are in the run's `pr-report` artifact._\n"


def with_published_plots(markdown: str, plots: Path, publish: Publisher) -> str:
    """Each regular plots/<name>.png published, its `](plots/<name>)` link replaced."""
    for png in sorted(plots.glob("*.png")) if plots.is_dir() else []:
        if png.is_symlink() or not png.is_file() or not PLOT_NAME.fullmatch(png.name):
            continue
        link = f"](plots/{png.name})"
        if link in markdown:
            markdown = markdown.replace(link, f"]({publish(png)})")
    return markdown


def verified_binary(path: Path, pinned_sha256: str) -> Path:
    """`path` once its sha256 equals the pinned one; refuses to vouch for it otherwise."""
    if not SHA256.fullmatch(pinned_sha256):
        raise PublishError(
            "no sha256 is pinned for the CML binary (set the repository variable "
            "PR2PROD_CML_SHA256 to the checksum of the release asset)"
        )
    if not path.is_file():
        raise PublishError(f"the CML binary {path} was not downloaded")
    with path.open("rb") as binary:
        actual = hashlib.file_digest(binary, "sha256").hexdigest()
    if actual != pinned_sha256:
        raise PublishError(f"the CML binary's sha256 is {actual}, not the pinned {pinned_sha256}")
    return path


def cml_publisher(cml: Path, pinned_sha256: str, repository_url: str) -> Publisher:
    """Publish with `cml asset publish`, run only once its checksum is verified."""

    verified: list[Path] = []  # checked once, before the first plot

    def publish(png: Path) -> str:
        if not verified:
            verified.append(verified_binary(cml, pinned_sha256))
        try:
            result = subprocess.run(
                [str(verified[0]), "asset", "publish", "--repo", repository_url, str(png)],
                capture_output=True,
                text=True,
                timeout=PUBLISH_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as error:
            raise PublishError(f"CML did not run for {png.name}: {error}") from error
        url = result.stdout.strip()
        if result.returncode != 0:
            last_line = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise PublishError(f"CML exited {result.returncode} for {png.name}: {last_line}")
        if not PUBLISHED_URL.fullmatch(url):
            raise PublishError(f"CML answered an unexpected address for {png.name}")
        return url

    return publish
