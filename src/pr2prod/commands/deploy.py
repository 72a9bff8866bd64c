"""Subcommands of deployment: the local stack, canary rollouts, rollback and their history,
and the steps of the deploy workflow (rehearsal state, stable check, summary, cluster access)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pr2prod import paths
from pr2prod.commands import arg, command
from pr2prod.errors import Pr2prodError

if TYPE_CHECKING:
    from pr2prod.settings import Settings

RELEASE = arg("release", nargs="?", help="bento tag (default: the bento of the current model)")
WAIT = arg(
    "--wait",
    type=float,
    metavar="SECONDS",
    help="how long to wait for a rollout that holds the deployment lock (default: none for "
    "the local target, 2400 for kubernetes)",
)
OUTPUTS = arg(
    "--outputs",
    type=Path,
    metavar="FILE",
    help="also append key=value lines to FILE (a workflow passes $GITHUB_OUTPUT)",
)


def _write_outputs(file: Path | None, **values: object) -> None:
    """Step outputs for GitHub Actions; printed too, so a run by hand shows them."""
    lines = [f"{key.replace('_', '-')}={value or ''}" for key, value in values.items()]
    print("\n".join(lines))
    if file is not None:
        with file.open("a") as handle:
            handle.write("\n".join(lines) + "\n")


def _release(args: argparse.Namespace) -> str:
    from pr2prod.release.bento import built_bento_tag

    return args.release or built_bento_tag()


def _local_target(router_port: int | None = None):
    from pr2prod.deploy.assembly import local_target

    return local_target(router_port)


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
    arg(
        "--skip-if-behind",
        metavar="BRANCH",
        help="do nothing when BRANCH on GitHub has moved past this commit (its own run "
        "deploys the newer one); checked while holding the deployment lock",
    ),
    WAIT,
    OUTPUTS,
    RELEASE,
)
def deploy(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import deployment_lock, make_controller
    from pr2prod.release.bento import expected_tags
    from pr2prod.report.revisions import head_sha
    from pr2prod.settings import load_settings

    release = _release(args)
    model = expected_tags()[0].split(":")[1] if args.release is None else None
    settings = load_settings().canary
    if args.synthetic_load is not None:
        settings = dataclasses.replace(settings, synthetic_load_rps=args.synthetic_load)
    controller = make_controller(settings)
    with deployment_lock(controller.target, args.wait):
        newer = _newer_commit(args.skip_if_behind, head_sha()) if args.skip_if_behind else None
        if newer:
            print(f"deploy: skipped: {args.skip_if_behind} is at {newer} now; its run deploys it")
            if args.outputs:
                _write_outputs(args.outputs, superseded_by=newer)
            return 0
        decision = controller.deploy(release, git_sha=head_sha(), model_version=model)
    return 0 if decision.successful else 1


def _newer_commit(branch: str, current: str | None) -> str | None:
    """The commit `branch` points at on GitHub when it is not `current`."""
    from pr2prod.github.api import GitHub

    with GitHub.from_environment() as github:
        newest = github.get(f"branches/{branch}")["commit"]["sha"]
    return None if newest == current else str(newest)


@command(
    "rehearse",
    "rehearse a canary rollout of the built bento locally, then stop",
    arg("--rate", type=float, default=50.0, help="requests/s of generated client traffic"),
)
def rehearse(args: argparse.Namespace) -> int:
    from pr2prod.deploy.history import windows_table
    from pr2prod.deploy.rehearsal import rehearse as rehearse_rollout
    from pr2prod.deploy.tuning import how_to_tune
    from pr2prod.release.bento import built_bento_tag, expected_tags
    from pr2prod.report.revisions import head_sha
    from pr2prod.settings import load_settings

    release, model = built_bento_tag(), expected_tags()[0]
    settings = load_settings()
    result = rehearse_rollout(release, settings, git_sha=head_sha(),
                              model_version=model.split(":")[1], rate=args.rate,
                              check=monitoring_check(settings))  # fmt: skip
    decision, clients = result.decision, result.clients
    report = paths.REPORT_MD if paths.REPORT_MD.is_file() else "(none: run `make report`)"
    if decision.successful:
        outcome = f"`make up` serves {release} for real"
    else:
        outcome = (
            f"{release} was rolled back: fix the model, or the setting that decided if it "
            "does not fit your data or machine, then run `make run` again"
        )
    decided = "" if decision.successful else f"  decided by:      {how_to_tune(decision.reason)}\n"
    print(
        f"\nSummary\n"
        f"  report:          {report}\n"
        f"  canary:          {release} (model {model})\n"
        f"  stable before:   {result.stable} (the model retrained with another seed)\n"
        f"  decision:        {decision.decision} after {result.seconds:.0f} s: {decision.reason}\n"
        f"{decided}"
        f"  deployed:        {release if decision.successful else result.stable}\n"
        f"  client requests: {clients.sent} sent at {args.rate:g}/s, {clients.failed} failed\n"
        f"  monitoring:      {result.monitoring or 'not checked'}\n"
        f"  everything the rehearsal started is stopped; {outcome}\n"
    )
    print(windows_table(decision.windows))
    return 0 if decision.successful else 1


def monitoring_check(settings: Settings) -> Callable[[str], str]:
    """make run's last look: the held-out rows and their labels through the deployed
    version, then the monitor."""

    def check(url: str) -> str:
        import httpx

        from pr2prod.monitor.demo import LabelledRows, held_out_check
        from pr2prod.monitor.report import MARKDOWN, version_summary
        from pr2prod.schema import load_schema

        out = paths.MONITOR_DIR / "run"
        schema = load_schema(paths.SCHEMA)
        try:
            rows = LabelledRows.of_split(paths.TEST_SPLIT, schema)
            report = held_out_check(url, rows, schema, settings, out)
        except (Pr2prodError, httpx.HTTPError) as error:
            return f"the check failed: {error}"
        found = "; ".join(version_summary(version) for version in report.versions)
        return f"{found or 'nothing served'}; report in {out / MARKDOWN}"

    return check


@command(
    "rollback",
    "bring back an earlier good release (default: the previous)",
    arg("--to", help="release to bring back (default: the previous)"),
    WAIT,
)
def rollback(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import deployment_lock, make_controller

    controller = make_controller()
    with deployment_lock(controller.target, args.wait):
        controller.rollback(to=args.to)
    return 0


@command("abort", "stop any canary at once (recording an unfinished rollout)", WAIT)
def abort(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import deployment_lock, describe, make_controller

    controller = make_controller()
    with deployment_lock(controller.target, args.wait):
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


# -- the deploy workflow's steps --------------------------------------------------------------


@command(
    "rehearsal-start",
    "start the release the previous CI rehearsal left serving (from main's newest saved "
    "state) as stable; without one, the rehearsal is a first deploy",
    arg("--built", help="the bento just built (default: the current model's)"),
    OUTPUTS,
)
def rehearsal_start(args: argparse.Namespace) -> int:
    from pr2prod.deploy.carried_state import fetch_newest, start_previous
    from pr2prod.errors import Pr2prodError
    from pr2prod.github.api import GitHub
    from pr2prod.release.bento import built_bento_tag
    from pr2prod.report.revisions import head_sha

    built = args.built or built_bento_tag()
    stable, run_id = None, None
    try:
        current = head_sha()
        if current is None:
            raise Pr2prodError("no git commit checked out to compare saved states with")
        with GitHub.from_environment() as github:
            carried = fetch_newest(github, paths.DEPLOY_STATE / "carried", current)
        if carried is None:
            print("::notice::No saved rehearsal state on main (none yet, or it expired): "
                  "this rehearsal is a first deploy.")  # fmt: skip
        elif carried.stable is None:
            run_id = carried.run_id
            print(f"::notice::The state of run {run_id} names no serving release: "
                  "this rehearsal is a first deploy.")  # fmt: skip
        else:
            run_id = carried.run_id
            stable = start_previous(carried, built)
            print(f"rehearsal-start: {stable} serves as stable (state of run {run_id})")
    except Pr2prodError as error:
        # A rehearsal without its previous state is still a rehearsal: warn, go on.
        print(f"::warning::{error}: rehearsing a first deploy instead.")
        stable = None
    _write_outputs(args.outputs, stable=stable, run_id=run_id, built=built)
    return 0


@command(
    "rehearsal-save",
    "write what the next CI rehearsal starts from (the stable release's name, the history)",
    arg("directory", type=Path, help="where to write it (the artifact's folder)"),
    OUTPUTS,
)
def rehearsal_save(args: argparse.Namespace) -> int:
    from pr2prod.deploy.carried_state import save

    stable = save(args.directory)
    if stable is None:
        print("::notice::No stable version serves: nothing saved; the next rehearsal starts "
              "from the last saved state.")  # fmt: skip
    _write_outputs(args.outputs, saved="true" if stable else "false", stable=stable)
    return 0


@command(
    "rehearsal-check",
    "after a failed rehearsal: end any canary, then check that stable serves through the router",
    arg("--previous", default="", help="the stable release the rehearsal started from"),
    OUTPUTS,
)
def rehearsal_check(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import local_target, make_controller
    from pr2prod.errors import Pr2prodError
    from pr2prod.readiness import wait_until_ready

    try:
        make_controller().abort("aborted: the rehearsal failed")
    except Pr2prodError as error:
        print(f"::warning::ending the canary failed ({error}); checking what serves all the same")
    status = local_target().status()
    stable = status["stable"]["release"] if status["stable"] and status["stable"]["alive"] else ""
    router = (status["router"] or {}).get("url")
    if not stable and not args.previous:
        result = "none"
    else:
        result = "failed"
        if stable and router:
            try:
                wait_until_ready(router, 30)
                result = "passed"
            except Pr2prodError as error:
                print(f"rehearsal-check: {error}")
    for log in sorted((paths.DEPLOY_STATE / "local" / "versions").glob("*/serve.log")):
        print(f"::group::the end of {log}")
        print("\n".join(log.read_text(errors="replace").splitlines()[-40:]))
        print("::endgroup::")
    _write_outputs(args.outputs, result=result, stable=stable)
    if result == "failed":
        failed = stable or args.previous
        print(f"::error::After the failed rehearsal, stable {failed} does not serve.")
        return 1
    return 0


@command(
    "deploy-summary",
    "the deploy job's summary in markdown: what happened, what runs, the history",
    arg("--target", choices=["local", "kubernetes"], required=True),
    arg("--release", help="what was rolled out (default: the current model's bento)"),
    arg("--outcome", default="", help="the rollout step's outcome (success, failure, ...)"),
    arg("--previous", default="", help="the stable release a rehearsal started from"),
    arg("--state-run", default="", help="the run whose saved state a rehearsal started from"),
    arg("--check", default="", help="the stable check after a failed rehearsal"),
    arg("--superseded-by", default="", help="the newer commit whose run deploys instead"),
)
def deploy_summary(args: argparse.Namespace) -> int:
    from pr2prod import environment
    from pr2prod.deploy.assembly import describe, make_controller
    from pr2prod.deploy.job_summary import DeployJob, render
    from pr2prod.errors import Pr2prodError

    if args.release is None:
        from pr2prod.release.bento import built_bento_tag

        args.release = built_bento_tag()
    job = DeployJob(
        target=args.target,
        release=args.release,
        outcome=args.outcome,
        previous=args.previous,
        state_run=args.state_run,
        check=args.check,
        namespace=environment.KUBE_NAMESPACE.value(),
        superseded_by=args.superseded_by,
    )
    try:
        controller = make_controller()
        running = describe(controller.target.running())
        status = f"running ({controller.target.name}): {running}\n\n{controller.history.table()}"
    except Pr2prodError as error:
        status = f"(deploy-status failed: {error})"
    print(render(job, status))
    return 0


@command(
    "connect-cluster",
    "write the kubeconfig read on stdin to a private file, check the cluster answers, and "
    "print KUBECONFIG=<file> (a workflow appends it to $GITHUB_ENV)",
    arg("--kubeconfig", type=Path, required=True, help="the file to write (outside the checkout)"),
)
def connect_cluster(args: argparse.Namespace) -> int:
    from pr2prod import environment
    from pr2prod.deploy.kubernetes import KubernetesTarget
    from pr2prod.errors import Pr2prodError

    kubeconfig = sys.stdin.read()
    needed = {
        "the secret KUBE_CONFIG (on stdin)": kubeconfig.strip(),
        "the variable PROMETHEUS_URL": environment.PROMETHEUS_URL.value(),
        "PR2PROD_ENTRY_URL (the variable PRODUCTION_URL)": environment.PR2PROD_ENTRY_URL.value(),
    }
    missing = [what for what, value in needed.items() if not value]
    if missing:
        raise Pr2prodError(
            f"DEPLOY_TARGET=kubernetes needs {'; '.join(missing)}", hint="see docs/github-setup.md"
        )
    args.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
    # Readable by this user only, from its first byte.
    descriptor = os.open(args.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w") as handle:
        handle.write(kubeconfig if kubeconfig.endswith("\n") else kubeconfig + "\n")
    target = KubernetesTarget(
        environment.KUBE_NAMESPACE.value(),
        context=environment.KUBE_CONTEXT.value() or None,
        kubeconfig=args.kubeconfig,
    )
    print(target.kubectl("version"), file=sys.stderr)
    print(f"KUBECONFIG={args.kubeconfig}")
    return 0
