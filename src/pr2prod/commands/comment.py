"""Subcommands of the pull-request comment: write its text, then post it as one comment."""

from __future__ import annotations

import argparse
from pathlib import Path

from pr2prod.commands import arg, command


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
)
def comment_body(args: argparse.Namespace) -> int:
    from pr2prod import environment
    from pr2prod.github.comment_body import (
        cml_publisher,
        missing_report_comment,
        report_comment,
    )

    if (args.report / "report.md").exists() or (args.report / "report.md").is_symlink():
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
        "--author",
        default="github-actions[bot]",
        help="the login the token posts as; only its comments are ever edited",
    ),
)
def comment(args: argparse.Namespace) -> int:
    from pr2prod.github.api import GitHub
    from pr2prod.github.comment import (
        parse_pr_number,
        post_report_comment,
        pull_request_head,
        read_pr_number,
    )

    pr = read_pr_number(args.pr_file) if args.pr_file else None
    if pr is None and args.pr:
        pr = parse_pr_number(args.pr, "--pr")
    if pr is None:
        print("comment: no pull request number was given or found: nothing to post")
        return 0
    body = args.body_file.read_text(encoding="utf-8")
    with GitHub.from_environment() as github:
        if args.head_sha:
            head = pull_request_head(github, pr)
            if head != args.head_sha:
                print(f"comment: PR #{pr} is now at {head}, not {args.head_sha}: not posting")
                return 0
        posted = post_report_comment(github, pr, body, args.author)
    print(f"comment: {posted.action} {posted.url}")
    return 0
