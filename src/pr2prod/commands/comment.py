"""Subcommands of the pull-request comment: write its text, then post it as one comment."""

from __future__ import annotations

import argparse
from pathlib import Path

from pr2prod.commands import arg, command

SECTION = arg(
    "--section",
    choices=("report", "sweep"),
    default="report",
    help="the comment's section: the PR report, or the sweep's table (report/sweep/)",
)


@command(
    "comment-body",
    "write the PR comment's text from a downloaded report (plots published when possible)",
    arg("--report", type=Path, required=True, help="the downloaded pr-report directory"),
    arg("--output", type=Path, required=True, help="where to write the comment's markdown"),
    arg(
        "--images",
        choices=("publish", "none"),
        default="publish",
        help="publish: upload the plots with CML and link them; none: text only",
    ),
    arg("--cml", type=Path, help="the CML binary that publishes the plots"),
    arg("--cml-sha256", default="", help="the pinned sha256 CML must match before it runs"),
    arg("--run-url", default="", help="the report run, linked when it left no report"),
    arg("--head-sha", default="", help="the reported commit, named when there is no report"),
    SECTION,
)
def comment_body(args: argparse.Namespace) -> int:
    from pr2prod import environment
    from pr2prod.github.comment_body import (
        cml_publisher,
        missing_report_comment,
        missing_sweep_comment,
        read_report,
        report_comment,
    )

    if args.section == "sweep":
        # The sweep's table is text only: no plots to publish.
        sweep_md = args.report / "sweep.md"
        if sweep_md.exists() or sweep_md.is_symlink():
            body = read_report(sweep_md)
        else:
            print(f"comment-body: {args.report} holds no sweep.md: the sweep left no table")
            body = missing_sweep_comment(args.run_url, args.head_sha)
    elif (args.report / "report.md").exists() or (args.report / "report.md").is_symlink():
        repository_url = (
            f"{environment.GITHUB_SERVER_URL.value()}/{environment.GITHUB_REPOSITORY.value()}"
        )
        publish = cml_publisher(args.cml, args.cml_sha256, repository_url) if args.cml else None
        body = report_comment(args.report, args.images, publish)
    else:
        print(f"comment-body: {args.report} holds no report.md: the report was not produced")
        body = missing_report_comment(args.run_url, args.head_sha)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(body, encoding="utf-8")
    print(f"comment-body: wrote {args.output}")
    return 0


@command(
    "comment",
    "post the report as the PR's one report comment: the bot's own, edited in place",
    arg("--body-file", type=Path, required=True, help="the comment's markdown"),
    arg("--pr", default="", help="the pull request's number (used when --pr-file has none)"),
    arg("--pr-file", type=Path, help="a file holding the number (the report artifact's)"),
    arg("--head-sha", default="", help="post only while the pull request's head is this commit"),
    arg(
        "--dispatched-title",
        default="",
        help="a manual run's title (`... #<number>`): its number, set by GitHub from the "
        "run's input, is the pull request; its head is read from --head-sha-file",
    ),
    arg("--head-sha-file", type=Path, help="the artifact's record of the commit it is about"),
    arg(
        "--author",
        default="github-actions[bot]",
        help="the login the token posts as; only its comments are ever edited",
    ),
    SECTION,
)
def comment(args: argparse.Namespace) -> int:
    from pr2prod.github.api import GitHub
    from pr2prod.github.comment import (
        dispatched_pr_number,
        parse_pr_number,
        post_report_comment,
        pull_request_head,
        read_head_sha,
        read_pr_number,
    )

    head_sha = args.head_sha
    if args.dispatched_title:
        # A manual run has no pull request event to vouch for the artifact: the number is
        # the one GitHub put in the run's title; the artifact only says which commit it
        # swept, so a stale table is never posted over a newer head.
        pr = dispatched_pr_number(args.dispatched_title)
        head_sha = read_head_sha(args.head_sha_file) if args.head_sha_file else ""
        if not head_sha:
            print("comment: the artifact does not say which commit it is about: not posting")
            return 0
    else:
        pr = read_pr_number(args.pr_file) if args.pr_file else None
    if pr is None and args.pr:
        pr = parse_pr_number(args.pr, "--pr")
    if pr is None:
        print("comment: no pull request number was given or found: nothing to post")
        return 0
    body = args.body_file.read_text(encoding="utf-8")
    with GitHub.from_environment() as github:
        if head_sha:
            head = pull_request_head(github, pr)
            if head != head_sha:
                print(f"comment: PR #{pr} is now at {head}, not {head_sha}: not posting")
                return 0
        posted = post_report_comment(github, pr, body, args.author, args.section)
    print(f"comment: {posted.action} {posted.url}")
    return 0
