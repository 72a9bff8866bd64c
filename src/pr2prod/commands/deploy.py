"""Subcommands of deployment: the local stack, canary rollouts, rollback and their history."""

from __future__ import annotations

import argparse
import dataclasses
import json

from pr2prod import paths
from pr2prod.commands import arg, command

RELEASE = arg("release", nargs="?", help="bento tag (default: the bento of the current model)")


def _release(args: argparse.Namespace) -> str:
    from pr2prod.release.bento import built_bento_tag

    return args.release or built_bento_tag()


def _local_target(router_port: int | None = None):
    from pr2prod.deploy.assembly import make_target
    from pr2prod.settings import load_settings

    return make_target(load_settings().canary, "local", router_port=router_port)


@command(
    "up",
    "start the local deployment: router and the built bento as stable",
    arg("--port", type=int, default=3000, help="the router's port"),
    RELEASE,
)
def up(args: argparse.Namespace) -> int:
    from pr2prod.deploy.history import Decision, History
    from pr2prod.deploy.local import format_status

    tag = _release(args)
    print(f"up: starting what is not running yet: the router, {tag} as stable ...", flush=True)
    target = _local_target(args.port)
    had_stable = "stable" in target.running()
    status = target.up(tag)
    if not had_stable:  # the first stable: a release `make rollback` may return to later
        History(paths.DEPLOY_STATE / "history.jsonl").append(
            Decision(tag, "first-deploy", "started by `make up`", previous=None, target="local")
        )
    print(format_status(status))
    serving = status["stable"]["release"]
    if serving != tag:
        print(f"up: stable still serves {serving}, not {tag}: `make deploy` rolls {tag} out")
    print(f"up: send requests to {status['router']['url']}")
    return 0


@command("down", "stop the local deployment (router and every version)")
def down(_: argparse.Namespace) -> int:
    stopped = _local_target().down()["stopped"]
    if stopped["router"] is None and not stopped["versions"]:
        print("down: nothing was running")
        return 0
    versions = ", ".join(stopped["versions"]) or "no versions"
    print(f"down: stopped the router (pid {stopped['router']}) and {versions}")
    return 0


@command("status", "what the local deployment runs", arg("--json", action="store_true", help="raw"))
def status(args: argparse.Namespace) -> int:
    from pr2prod.deploy.local import format_status

    current = _local_target().status()
    print(json.dumps(current, indent=2) if args.json else format_status(current))
    return 0


@command(
    "deploy",
    "canary rollout of a release, promoted or rolled back by analysis",
    arg("strategy", choices=["canary"]),
    arg(
        "--synthetic-load",
        type=float,
        metavar="RPS",
        help="send test rows at this rate during each window (no real traffic)",
    ),
    RELEASE,
)
def deploy(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import make_controller
    from pr2prod.release.bento import expected_tags
    from pr2prod.report.revisions import head_sha
    from pr2prod.settings import load_settings

    release = _release(args)
    model = expected_tags()[0].split(":")[1] if args.release is None else None
    settings = load_settings().canary
    if args.synthetic_load is not None:
        settings = dataclasses.replace(settings, synthetic_load_rps=args.synthetic_load)
    controller = make_controller(settings)
    decision = controller.deploy(release, git_sha=head_sha(), model_version=model)
    return 0 if decision.successful else 1


@command(
    "rehearse",
    "rehearse a canary rollout of the built bento locally, then stop",
    arg("--rate", type=float, default=50.0, help="requests/s of generated client traffic"),
)
def rehearse(args: argparse.Namespace) -> int:
    from pr2prod.deploy.history import windows_table
    from pr2prod.deploy.rehearsal import rehearse as rehearse_rollout
    from pr2prod.release.bento import built_bento_tag, expected_tags
    from pr2prod.report.revisions import head_sha
    from pr2prod.settings import load_settings

    release, model = built_bento_tag(), expected_tags()[0]
    settings = load_settings()
    result = rehearse_rollout(release, settings, git_sha=head_sha(),
                              model_version=model.split(":")[1], rate=args.rate)  # fmt: skip
    decision, clients = result.decision, result.clients
    report = paths.REPORT_MD if paths.REPORT_MD.is_file() else "(none: run `make report`)"
    print(
        f"\nSummary\n"
        f"  report:          {report}\n"
        f"  canary:          {release} (model {model})\n"
        f"  stable before:   {result.stable} (the model retrained with another seed)\n"
        f"  decision:        {decision.decision} after {result.seconds:.0f} s: {decision.reason}\n"
        f"  deployed:        {release if decision.successful else result.stable}\n"
        f"  client requests: {clients.sent} sent at {args.rate:g}/s, {clients.failed} failed\n"
        f"  everything the rehearsal started is stopped; `make up` serves {release} for real\n"
    )
    print(windows_table(decision.windows))
    return 0 if decision.successful else 1


@command(
    "rollback",
    "bring back an earlier good release (default: the previous)",
    arg("--to", help="release to bring back (default: the previous)"),
)
def rollback(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import make_controller

    make_controller().rollback(to=args.to)
    return 0


@command("abort", "stop any canary at once (recording an unfinished rollout)")
def abort(_: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import describe, make_controller

    controller = make_controller()
    serving = controller.abort("aborted: the deploy job failed")
    print(f"abort: running now: {describe(controller.target.running())}")
    return 0 if serving else 1


@command("deploy-status", "what runs, and the deployment history")
def deploy_status(_: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import describe, make_controller

    controller = make_controller()
    print(f"running ({controller.target.name}): {describe(controller.target.running())}\n")
    print(controller.history.table())
    return 0
