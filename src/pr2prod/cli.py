"""The `pr2prod` command: one subcommand per step. dvc.yaml and the Makefile call these."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence

from pr2prod import paths
from pr2prod.config import load_params
from pr2prod.console import describe_metrics, describe_validation
from pr2prod.errors import Pr2prodError
from pr2prod.schema import load_schema


def cmd_data(_: argparse.Namespace) -> int:
    from pr2prod.data.fetch import fetch_data

    print(fetch_data())
    return 0


def cmd_validate(_: argparse.Namespace) -> int:
    from pr2prod.data.validation import validate_file

    params, schema = load_params(paths.PARAMS), load_schema(paths.SCHEMA)
    report = validate_file(params.data_file, schema)
    paths.VALIDATION_REPORT.parent.mkdir(parents=True, exist_ok=True)
    paths.VALIDATION_REPORT.write_text(report.to_json())
    print(describe_validation(report), file=sys.stdout if report.valid else sys.stderr)
    return 0 if report.valid else 1


def cmd_prepare(_: argparse.Namespace) -> int:
    from pr2prod.model.split import split_dataset

    params, schema = load_params(paths.PARAMS), load_schema(paths.SCHEMA)
    train_rows, test_rows = split_dataset(params, schema, paths.TRAIN_SPLIT, paths.TEST_SPLIT)
    print(f"prepare: {train_rows} training rows, {test_rows} test rows (seed {params.seed})")
    return 0


def cmd_train(_: argparse.Namespace) -> int:
    from pr2prod.model.train import train_model

    params, schema = load_params(paths.PARAMS), load_schema(paths.SCHEMA)
    print(f"train: fitting {params.train.estimator} ...", flush=True)
    rows = train_model(params, schema, paths.TRAIN_SPLIT, paths.MODEL, paths.MODEL_CARD)
    print(f"train: fitted on {rows} rows, saved {paths.MODEL}")
    return 0


def cmd_evaluate(_: argparse.Namespace) -> int:
    from pr2prod.model.evaluate import evaluate_model, write_evaluation

    schema = load_schema(paths.SCHEMA)
    evaluation = evaluate_model(paths.MODEL, paths.TEST_SPLIT, schema)
    write_evaluation(evaluation, paths.METRICS, paths.PREDICTIONS, paths.ROC_CURVE, paths.PR_CURVE)
    figures = evaluation.metrics
    print(
        f"evaluate: accuracy {figures['accuracy']:.4f}, F1 {figures['f1']:.4f}, "
        f"ROC-AUC {figures['roc_auc']:.4f} on {figures['test_rows']} test rows"
    )
    return 0


def cmd_repro(_: argparse.Namespace) -> int:
    from pr2prod.repro import reproduce

    return reproduce(paths.REPRO_RECORD)


def cmd_report(args: argparse.Namespace) -> int:
    from pr2prod.report.build import build_report
    from pr2prod.report.render import to_json, to_markdown
    from pr2prod.report.revisions import default_base

    base = args.base or default_base()
    print(f"report: comparing the workspace with {base or 'nothing (no base revision)'} ...")
    report = build_report(base, paths.REPORT_DIR)
    paths.REPORT_DIR.mkdir(parents=True, exist_ok=True)
    paths.REPORT_MD.write_text(to_markdown(report))
    paths.REPORT_JSON.write_text(to_json(report))
    verdict = "passes" if report.verdict.passed else "fails"
    print(f"report: the quality gate {verdict}: {report.verdict.reason}")
    print(f"report: wrote {paths.REPORT_MD} and {paths.REPORT_JSON}")
    return 0


def cmd_gate(_: argparse.Namespace) -> int:
    from pr2prod.report.gate_status import gate_status

    passed, summary = gate_status(paths.REPORT_JSON)
    print(summary, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1


def cmd_bento(_: argparse.Namespace) -> int:
    from pr2prod.serving.build import build_bento

    params, schema = load_params(paths.PARAMS), load_schema(paths.SCHEMA)
    info = build_bento(params, schema)
    model_state = "stored" if info.model_created else "already stored"
    bento_state = "built" if info.bento_created else "already built (nothing changed)"
    print(f"bento: model {info.model_tag} {model_state}; bento {info.bento_tag} {bento_state}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from pr2prod.serving.build import built_bento_tag

    tag = built_bento_tag()
    print(f"serve: {tag} on http://{args.host}:{args.port} (Ctrl-C stops it)", flush=True)
    command = ["bentoml", "serve", tag, "--host", args.host, "--port", str(args.port)]
    os.execvp(command[0], command)  # the server replaces this process: signals go to it


def cmd_image(args: argparse.Namespace) -> int:
    from pr2prod.serving.build import built_bento_tag, expected_tags
    from pr2prod.serving.image import (
        containerize,
        docker_available,
        image_labels,
        write_image_context,
    )

    tag = built_bento_tag()
    labels = image_labels(tag, expected_tags()[0])
    image = args.image or tag
    if docker_available():
        containerize(tag, image, labels)
        print(f"image: built {image}")
        return 0
    dockerfile = write_image_context(tag, paths.IMAGE_CONTEXT, labels)
    print(
        f"image: no Docker daemon here, so no image was built. Wrote a complete build context "
        f"(the bento, its model and {dockerfile.name}) to {paths.IMAGE_CONTEXT}/.\n"
        f"Build it where Docker runs: docker build -t {image} {paths.IMAGE_CONTEXT}"
    )
    return 0


def cmd_smoke(args: argparse.Namespace) -> int:
    from pr2prod.serving.smoke import smoke_test

    passed, summary = smoke_test(args.url, timeout=args.timeout)
    print(summary, file=sys.stdout if passed else sys.stderr)
    return 0 if passed else 1


def cmd_verify(_: argparse.Namespace) -> int:
    from pr2prod.report.reproducibility import check_reproducibility

    result = check_reproducibility(paths.REPRO_RECORD)
    if not result.committed:
        raise Pr2prodError("HEAD has no dvc.lock to compare with", hint="commit dvc.lock")
    if result.matches:
        print("verify: the reproduced dvc.lock and metrics are exactly the committed ones")
        return 0
    differences = "\n".join(
        f"  {line}" for line in [*result.lock_differences, *result.metric_differences]
    )
    print(
        f"verify: what was reproduced differs from what was committed:\n{differences}\n"
        "The commit does not hold the results of its own pipeline: run `make repro` and "
        "commit dvc.lock and results/.",
        file=sys.stderr,
    )
    return 1


def _release(args: argparse.Namespace) -> str:
    from pr2prod.serving.build import built_bento_tag

    return args.release or built_bento_tag()


def cmd_deploy(args: argparse.Namespace) -> int:
    import dataclasses

    from pr2prod.deploy.assembly import make_controller
    from pr2prod.deploy.settings import CanarySettings
    from pr2prod.report.revisions import head_sha
    from pr2prod.serving.build import expected_tags

    release = _release(args)
    model = expected_tags()[0].split(":")[1] if args.release is None else None
    settings = CanarySettings.from_params(paths.PARAMS)
    if args.synthetic_load is not None:
        settings = dataclasses.replace(settings, synthetic_load_rps=args.synthetic_load)
    controller = make_controller(settings)
    decision = controller.deploy(release, git_sha=head_sha(), model_version=model)
    return 0 if decision.successful else 1


def cmd_rehearse(args: argparse.Namespace) -> int:
    from pr2prod.deploy.history import windows_table
    from pr2prod.deploy.rehearsal import rehearse
    from pr2prod.deploy.settings import CanarySettings
    from pr2prod.report.revisions import head_sha
    from pr2prod.serving.build import built_bento_tag, expected_tags

    release, model = built_bento_tag(), expected_tags()[0]
    settings = CanarySettings.from_params(paths.PARAMS)
    result = rehearse(release, settings, git_sha=head_sha(), model_version=model.split(":")[1],
                      rate=args.rate)  # fmt: skip
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


def cmd_rollback(args: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import make_controller

    make_controller().rollback(to=args.to)
    return 0


def cmd_abort(_: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import describe, make_controller

    controller = make_controller()
    serving = controller.abort("aborted: the deploy job failed")
    print(f"abort: running now: {describe(controller.target.running())}")
    return 0 if serving else 1


def cmd_deploy_status(_: argparse.Namespace) -> int:
    from pr2prod.deploy.assembly import describe, make_controller

    controller = make_controller()
    print(f"running ({controller.target.name}): {describe(controller.target.running())}\n")
    print(controller.history.table())
    return 0


def local_target(router_port: int | None = None):
    from pr2prod.deploy.assembly import make_target
    from pr2prod.deploy.settings import CanarySettings

    settings = CanarySettings.from_params(paths.PARAMS)
    return make_target(settings, "local", router_port=router_port)


def cmd_up(args: argparse.Namespace) -> int:
    from pr2prod.deploy.history import Decision, History
    from pr2prod.deploy.local import format_status

    tag = _release(args)
    print(f"up: starting what is not running yet: the router, {tag} as stable ...", flush=True)
    target = local_target(args.port)
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


def cmd_status(args: argparse.Namespace) -> int:
    from pr2prod.deploy.local import format_status

    status = local_target().status()
    print(json.dumps(status, indent=2) if args.json else format_status(status))
    return 0


def cmd_down(_: argparse.Namespace) -> int:
    stopped = local_target().down()["stopped"]
    if stopped["router"] is None and not stopped["versions"]:
        print("down: nothing was running")
        return 0
    versions = ", ".join(stopped["versions"]) or "no versions"
    print(f"down: stopped the router (pid {stopped['router']}) and {versions}")
    return 0


def cmd_summary(_: argparse.Namespace) -> int:
    if not paths.METRICS.is_file():
        raise Pr2prodError(f"{paths.METRICS} not found", hint="run `make run` first")
    print(describe_metrics(paths.METRICS))
    print(
        f"\nResults: {paths.METRICS} (metrics), {paths.PREDICTIONS} (per-row test predictions),"
        f" {paths.RESULTS}/plots/ (ROC and precision-recall data), {paths.MODEL} (the model)."
        "\nPlots: `dvc plots show` writes them to dvc_plots/index.html."
    )
    return 0


COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], int], str]] = {
    "data": (cmd_data, "put the data recorded in data.dvc into data/ (pull or embedded sample)"),
    "validate": (cmd_validate, "check the data against schema.yaml; fail on any broken rule"),
    "prepare": (cmd_prepare, "split the data into seeded, stratified train and test sets"),
    "train": (cmd_train, "fit the scikit-learn pipeline described by params.yaml"),
    "evaluate": (cmd_evaluate, "write test metrics, per-row predictions and plot data"),
    "repro": (cmd_repro, "dvc repro, recording which stages ran (for the report)"),
    "report": (cmd_report, "compare the workspace with a base revision: report/report.md"),
    "gate": (cmd_gate, "exit non-zero when the report's quality gate fails"),
    "bento": (cmd_bento, "build the BentoML bento serving the pipeline's model"),
    "serve": (cmd_serve, "serve the built bento locally"),
    "image": (cmd_image, "container image of the bento (or a Docker build context)"),
    "smoke": (cmd_smoke, "check a running service: ready, and golden rows as evaluated"),
    "verify": (cmd_verify, "fail when the reproduced dvc.lock or metrics differ from HEAD's"),
    "up": (cmd_up, "start the local deployment: router and the built bento as stable"),
    "down": (cmd_down, "stop the local deployment (router and every version)"),
    "status": (cmd_status, "what the local deployment runs"),
    "deploy": (cmd_deploy, "canary rollout of a release, promoted or rolled back by analysis"),
    "rehearse": (cmd_rehearse, "rehearse a canary rollout of the built bento locally, then stop"),
    "rollback": (cmd_rollback, "bring back an earlier good release (default: the previous)"),
    "abort": (cmd_abort, "stop any canary at once (recording an unfinished rollout)"),
    "deploy-status": (cmd_deploy_status, "what runs, and the deployment history"),
    "summary": (cmd_summary, "print the latest metrics and where the results are"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pr2prod", description="Take a model from pull request to production."
    )
    subcommands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (handler, help_text) in COMMANDS.items():
        subcommand = subcommands.add_parser(name, help=help_text, description=help_text)
        subcommand.set_defaults(handler=handler)
        if name == "serve":
            subcommand.add_argument("--host", default="127.0.0.1")
            subcommand.add_argument("--port", type=int, default=3000)
        if name == "up":
            subcommand.add_argument("--port", type=int, default=3000, help="the router's port")
        if name == "status":
            subcommand.add_argument("--json", action="store_true", help="the raw status")
        if name in ("up", "deploy"):
            if name == "deploy":
                subcommand.add_argument("strategy", choices=["canary"])
                subcommand.add_argument(
                    "--synthetic-load",
                    type=float,
                    metavar="RPS",
                    help="send test rows at this rate during each window (no real traffic)",
                )
            subcommand.add_argument(
                "release", nargs="?", help="bento tag (default: the bento of the current model)"
            )
        if name == "rehearse":
            subcommand.add_argument(
                "--rate", type=float, default=50.0, help="requests/s of generated client traffic"
            )
        if name == "rollback":
            subcommand.add_argument("--to", help="release to bring back (default: the previous)")
        if name == "image":
            subcommand.add_argument("--image", help="image name:tag (default: the bento tag)")
        if name == "smoke":
            subcommand.add_argument("--url", default="http://127.0.0.1:3000")
            subcommand.add_argument("--timeout", type=float, default=120)
        if name == "report":
            subcommand.add_argument(
                "--base",
                help="git revision to compare with (default: the PR's base branch, main, "
                "or the previous commit on main)",
            )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.handler(args)
    except Pr2prodError as error:
        print(f"error: {error}", file=sys.stderr)
        if error.hint:
            print(f"what to do: {error.hint}", file=sys.stderr)
        return 2
