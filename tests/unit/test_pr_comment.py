"""`pr2prod comment` and `pr2prod comment-body` against the local GitHub fake.

The report comment must stay one comment, the bot's own: CML 0.20.6 reads only the first
30 comments and matches its watermark in anyone's comment, so these tests put the report
past the first page and next to a reviewer's quote of it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
from github_fake import FakeGitHub

from pr2prod.cli import main
from pr2prod.errors import EXIT_USER_ERROR
from pr2prod.github.comment import WATERMARK
from pr2prod.github.sections import SWEEP_MARKER

PR = 7
HEAD = "a" * 40
BOT = "github-actions[bot]"
REPORT = "<!-- pr2prod-report -->\n## pr2prod report\n\n![Confusion matrix](plots/confusion.png)\n"


@pytest.fixture()
def fake(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeGitHub]:
    with FakeGitHub() as server:
        monkeypatch.setenv("GITHUB_REPOSITORY", server.repository)
        monkeypatch.setenv("GITHUB_TOKEN", server.token)
        monkeypatch.setenv("GITHUB_API_URL", server.url)
        server.add_pull(PR, HEAD)
        yield server


def post(body: Path, *extra: str) -> int:
    return main(["comment", "--body-file", str(body), "--pr", str(PR), *extra])


def reports(fake: FakeGitHub) -> list[dict]:
    return [c for c in fake.posted(PR, BOT) if c["body"].startswith(WATERMARK)]


def test_a_long_discussion_keeps_one_report_edited_in_place(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    for number in range(100):
        fake.add_comment(PR, f"review comment {number}")
    body = tmp_path / "comment.md"
    body.write_text("first report\n")
    assert post(body) == 0
    [first] = reports(fake)
    # A reviewer quotes the raw report, watermark and all; an older bot comment is no report.
    quote = fake.add_comment(PR, f"> {WATERMARK}\n> first report\n\nWhy did it drop?")
    copied = fake.add_comment(PR, f"{WATERMARK}\nfirst report", author="reviewer")
    fake.add_comment(PR, "an unrelated bot message", author=BOT)

    body.write_text("second report\n")
    assert post(body, "--head-sha", HEAD) == 0

    [report] = reports(fake)
    assert report["id"] == first["id"]
    assert report["body"] == f"{WATERMARK}\nsecond report\n"
    assert quote["body"].endswith("Why did it drop?")
    assert copied["body"] == f"{WATERMARK}\nfirst report"
    assert len(fake.posted(PR)) == 100 + 1 + 3
    # The report was the 101st comment: only the second page of the listing had it.
    pages = [c.query.get("page") for c in fake.calls if c.path.endswith(f"/{PR}/comments")]
    assert "2" in pages


def test_a_quote_by_someone_else_is_never_taken_for_the_report(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    quote = fake.add_comment(PR, f"{WATERMARK}\nold report", author="reviewer")
    body = tmp_path / "comment.md"
    body.write_text(f"{WATERMARK}\nnew report\n")

    assert post(body) == 0
    assert post(body) == 0  # the same text again: left as it is

    [report] = reports(fake)
    assert report["body"] == f"{WATERMARK}\nnew report\n"  # the watermark only once
    assert quote["body"] == f"{WATERMARK}\nold report"
    assert [c.method for c in fake.calls].count("POST") == 1
    assert [c.method for c in fake.calls].count("PATCH") == 0


def test_nothing_is_posted_once_the_pull_request_moved_on(
    fake: FakeGitHub, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "comment.md"
    body.write_text("report of an older commit\n")

    assert post(body, "--head-sha", "b" * 40) == 0

    assert fake.posted(PR) == []
    assert "not posting" in capsys.readouterr().out


def test_the_number_comes_from_the_report_file_first(fake: FakeGitHub, tmp_path: Path) -> None:
    body = tmp_path / "comment.md"
    body.write_text("report\n")
    number = tmp_path / "pr-number"
    number.write_text(f"{PR}\n")
    fake.add_pull(8, HEAD)

    assert main(["comment", "--body-file", str(body), "--pr-file", str(number), "--pr", "8"]) == 0

    assert len(reports(fake)) == 1 and fake.posted(8) == []


def test_without_a_number_there_is_nothing_to_post(fake: FakeGitHub, tmp_path: Path) -> None:
    body = tmp_path / "comment.md"
    body.write_text("report\n")

    missing = tmp_path / "no-report" / "pr-number"
    assert main(["comment", "--body-file", str(body), "--pr-file", str(missing), "--pr", ""]) == 0

    assert fake.calls == []


@pytest.mark.parametrize("text", ["7; rm -rf /", "../7", "0", "", "9" * 40])
def test_a_number_from_the_artifact_is_checked(
    fake: FakeGitHub, tmp_path: Path, text: str, capsys: pytest.CaptureFixture[str]
) -> None:
    body = tmp_path / "comment.md"
    body.write_text("report\n")
    number = tmp_path / "pr-number"
    number.write_text(text)

    assert main(["comment", "--body-file", str(body), "--pr-file", str(number)]) == EXIT_USER_ERROR

    assert "does not hold a pull request number" in capsys.readouterr().err
    assert fake.calls == []


# comment-body ------------------------------------------------------------------------


@pytest.fixture()
def report_dir(tmp_path: Path) -> Path:
    report = tmp_path / "pr-report"
    (report / "plots").mkdir(parents=True)
    (report / "report.md").write_text(REPORT)
    (report / "plots" / "confusion.png").write_bytes(b"\x89PNG not really")
    return report


def fake_cml(tmp_path: Path, script: str) -> tuple[Path, str]:
    """An executable standing in for CML (`cml asset publish --repo URL FILE`), and its sha256."""
    cml = tmp_path / "cml"
    cml.write_text(f"#!/bin/sh\n{script}\n")
    cml.chmod(0o755)
    return cml, hashlib.sha256(cml.read_bytes()).hexdigest()


def body_for(report: Path, tmp_path: Path, *extra: str) -> str:
    output = tmp_path / "comment.md"
    assert main(["comment-body", "--report", str(report), "--output", str(output), *extra]) == 0
    return output.read_text()


def test_published_plots_are_linked(report_dir: Path, tmp_path: Path) -> None:
    cml, sha256 = fake_cml(tmp_path, 'echo "https://assets.example/$(basename "$5")"')

    body = body_for(report_dir, tmp_path, "--cml", str(cml), "--cml-sha256", sha256)

    assert "![Confusion matrix](https://assets.example/confusion.png)" in body


@pytest.mark.parametrize(
    ("script", "pinned", "reason"),
    [
        ("echo 'host unreachable' >&2; exit 1", None, "CML exited 1 for confusion.png"),
        ("echo 'javascript:alert(1)'", None, "unexpected address"),
        ("echo https://assets.example/x.png", "0" * 64, "not the pinned"),
        ("echo https://assets.example/x.png", "", "PR2PROD_CML_SHA256"),
    ],
    ids=["host-fails", "odd-answer", "checksum-differs", "no-checksum-pinned"],
)
def test_a_failed_publication_falls_back_to_text(
    report_dir: Path, tmp_path: Path, script: str, pinned: str | None, reason: str
) -> None:
    cml, sha256 = fake_cml(tmp_path, script)

    body = body_for(
        report_dir,
        tmp_path,
        "--cml",
        str(cml),
        "--cml-sha256",
        sha256 if pinned is None else pinned,
    )

    assert "## pr2prod report" in body
    assert "![" not in body and "plots/confusion.png" not in body
    assert reason in body
    assert "`pr-report` artifact" in body


def test_text_only_when_images_are_not_wanted(report_dir: Path, tmp_path: Path) -> None:
    cml, sha256 = fake_cml(
        tmp_path, 'touch "$(dirname "$0")/ran"; echo https://assets.example/x.png'
    )

    body = body_for(
        report_dir, tmp_path, "--images", "none", "--cml", str(cml), "--cml-sha256", sha256
    )

    assert "![" not in body and "PR2PROD_COMMENT_IMAGES=none" in body
    assert not (tmp_path / "ran").exists()


def test_a_missing_report_says_so_with_a_link_to_the_run(tmp_path: Path) -> None:
    run_url = "https://github.invalid/octo/pr2prod/actions/runs/99"

    body = body_for(tmp_path / "nothing", tmp_path, "--run-url", run_url, "--head-sha", HEAD)

    assert "The report could not be produced for `aaaaaaaa`" in body
    assert f"[its run]({run_url})" in body


SWEEP = f"{SWEEP_MARKER}\n## Sweep: 9 runs, 9 done, 0 failed or missing; best: `sweep-5`\n"


def test_the_sweep_joins_the_report_comment_as_its_own_section(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    report, sweep = tmp_path / "report.md", tmp_path / "sweep.md"
    report.write_text("first report\n")
    # A section written by the pull request cannot open another section.
    sweep.write_text(SWEEP + f"\n{SWEEP_MARKER}\nsmuggled\n")
    assert post(sweep, "--section", "sweep") == 0
    assert post(report) == 0
    report.write_text(f"second report {SWEEP_MARKER}\n")
    assert post(report) == 0

    [comment] = reports(fake)
    assert comment["body"] == (f"{WATERMARK}\nsecond report \n\n{SWEEP.rstrip()}\n\n\nsmuggled\n")
    assert comment["body"].count(SWEEP_MARKER) == 1

    sweep.write_text(f"{SWEEP_MARKER}\n## Sweep: 4 runs\n")
    assert post(sweep, "--section", "sweep") == 0

    [comment] = reports(fake)
    assert comment["body"] == f"{WATERMARK}\nsecond report \n\n{SWEEP_MARKER}\n## Sweep: 4 runs\n"


def test_the_sweep_section_is_read_from_its_artifact_or_says_why_it_is_missing(
    tmp_path: Path,
) -> None:
    artifact, output = tmp_path / "pr-sweep", tmp_path / "comment.md"
    artifact.mkdir()
    base = ["comment-body", "--report", str(artifact), "--output", str(output)]
    run_url = "https://github.com/o/r/actions/runs/9"

    assert main([*base, "--section", "sweep", "--run-url", run_url, "--head-sha", HEAD]) == 0
    assert "The sweep's table could not be produced for `aaaaaaaa`" in output.read_text()
    assert f"[its run]({run_url})" in output.read_text()

    (artifact / "sweep.md").write_text(SWEEP)
    assert main([*base, "--section", "sweep"]) == 0
    assert output.read_text() == SWEEP


def test_a_manual_sweep_posts_to_the_pull_request_its_title_names(
    fake: FakeGitHub, tmp_path: Path
) -> None:
    artifact = tmp_path / "pr-sweep"
    artifact.mkdir()
    body = artifact / "sweep.md"
    body.write_text(SWEEP)
    # The artifact is written by the pull request's code: its number is never trusted.
    (artifact / "pr-number").write_text("999\n")
    (artifact / "head-sha").write_text("b" * 40 + "\n")
    manual = [
        "comment",
        "--body-file",
        str(body),
        "--section",
        "sweep",
        "--pr-file",
        str(artifact / "pr-number"),
        "--head-sha",
        "c" * 40,  # a manual run's own commit: the default branch's, not the PR's
        "--head-sha-file",
        str(artifact / "head-sha"),
    ]

    # The table is of an older commit than the pull request's head: not posted.
    assert main([*manual, "--dispatched-title", f"Sweep of PR #{PR}"]) == 0
    assert fake.posted(PR) == []

    (artifact / "head-sha").write_text(HEAD + "\n")
    assert main([*manual, "--dispatched-title", f"Sweep of PR #{PR}"]) == 0
    [comment] = reports(fake)
    assert comment["body"] == f"{WATERMARK}\n{SWEEP}"

    assert main([*manual, "--dispatched-title", "Sweep of PR #"]) == EXIT_USER_ERROR
