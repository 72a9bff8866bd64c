"""`pr2prod monitor`: is live traffic still what each served model was trained on?"""

from __future__ import annotations

import argparse
import functools
import re
import sys
import time
from pathlib import Path

from pr2prod import paths
from pr2prod.commands import arg, command
from pr2prod.errors import Pr2prodError

UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# Prometheus alerting rules for the current model (`make alert-rules`; build/ is ignored by git).
ALERT_RULES = Path("build") / "prometheus" / "pr2prod-rules.yaml"


def duration_seconds(text: str) -> float:
    matched = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if matched is None:
        raise Pr2prodError(
            f"--since {text!r} is not a duration", hint="write it like 90s, 30m, 6h or 1d"
        )
    return float(matched.group(1)) * UNITS[matched.group(2)]


@command(
    "monitor",
    "compare live traffic with each served model's reference and write a drift report",
    arg("--url", help="a service's base URL: its GET /metrics (the counts since it started)"),
    arg("--prometheus", help="a Prometheus base URL (default: $PROMETHEUS_URL): a time range"),
    arg("--selector", default="", help='with Prometheus: matchers of the service, e.g. job="x"'),
    arg("--since", default="1h", help="with Prometheus: the range ending now: 30m, 6h, 1d..."),
    arg(
        "--reference",
        type=Path,
        help="a reference.json for every version (default: each "
        "version's own, from its bundle in the local model store)",
    ),
    arg(
        "--labels",
        type=Path,
        help="labelled predictions (a file or folder of .jsonl/.csv: prediction_id, label) "
        "to judge live performance by, instead of the feedback the service counted",
    ),
    arg("--output", type=Path, default=paths.MONITOR_DIR, help="where the report goes"),
    arg("--fail-on-drift", action="store_true", help="exit with status 1 when drift is found"),
)
def monitor(args: argparse.Namespace) -> int:
    from pr2prod import environment
    from pr2prod.deploy.observations import PrometheusSource
    from pr2prod.monitor.drift import DRIFT
    from pr2prod.monitor.labels import classes_of, confusion_counts, labelled_predictions
    from pr2prod.monitor.live import LiveCounts, from_prometheus, from_service
    from pr2prod.monitor.references import stored_reference
    from pr2prod.monitor.report import MARKS, drift_report, version_summary, write_report
    from pr2prod.serving.feedback import error_sums
    from pr2prod.serving.reference import Reference
    from pr2prod.settings import load_settings

    everything = load_settings()
    settings = everything.monitor
    prometheus = args.prometheus or environment.PROMETHEUS_URL.value()
    if args.url:
        live, source = from_service(args.url), f"{args.url.rstrip('/')}/metrics (since it started)"
    elif prometheus:
        end = time.time()
        source_api = PrometheusSource(prometheus, {})
        live = from_prometheus(source_api, args.selector, end - duration_seconds(args.since), end)
        source = f"Prometheus at {prometheus}, the last {args.since}"
    elif args.labels:
        live, source = {}, "no live counts"
    else:
        raise Pr2prodError(
            "no live statistics to read",
            hint="pass --url (a service) or --prometheus (or set PROMETHEUS_URL); "
            "with make: `make monitor URL=http://127.0.0.1:3000`",
        )
    given = Reference.load(args.reference) if args.reference else None

    @functools.cache
    def reference_for(version: str) -> Reference:
        return given or stored_reference(version)

    if args.labels:
        labelled = labelled_predictions(args.labels, lambda v: classes_of(reference_for(v)))
        for counts in live.values():
            # The files hold the labels; the service's counters would count them twice.
            counts.feedback, counts.error_sums = {}, {}
        for version, judged in labelled.items():
            counts = live.setdefault(version, LiveCounts())
            if classes_of(reference_for(version)):
                counts.feedback = confusion_counts(judged)
            else:
                counts.error_sums = error_sums(judged)
        source += f"; labels from {args.labels}"
    report = drift_report(
        live,
        source,
        settings,
        reference_for,
        everything.gate,
        everything.report.bootstrap_resamples,
    )
    written = write_report(report, args.output)
    versions = report.versions
    for version in versions:
        print(f"monitor: model {version.model_version}: {version_summary(version)}")
    print(f"monitor: {MARKS[report.verdict]}; report in {written['markdown']}", file=sys.stdout)
    return 1 if args.fail_on_drift and report.verdict == DRIFT else 0


@command(
    "drift-issue",
    "open, update or close the repository's one drift issue from a drift report",
    arg("--report", type=Path, default=paths.MONITOR_DIR, help="the monitor's report directory"),
    arg("--run-url", default="", help="the monitor run, linked from the issue"),
)
def drift_issue(args: argparse.Namespace) -> int:
    import json

    from pr2prod.github.api import GitHub
    from pr2prod.github.drift_issue import sync_drift_issue
    from pr2prod.monitor.report import JSON, MARKDOWN

    if not (args.report / JSON).is_file():
        raise Pr2prodError(
            f"{args.report / JSON} not found", hint="run `make monitor` first (it writes it)"
        )
    report = json.loads((args.report / JSON).read_text())
    markdown = (args.report / MARKDOWN).read_text()
    with GitHub.from_environment() as github:
        done = sync_drift_issue(github, report, markdown, args.run_url)
    where = f" #{done.number}" if done.number else ""
    print(f"drift-issue: {report['verdict']}: {done.action}{where}")
    return 0


@command(
    "retrain-pr",
    "add newly labelled rows to the data (DVC) and open a pull request that retrains on them",
    arg("labelled", type=Path, help="a CSV of labelled rows: the schema's columns"),
    arg("--base", default="main", help="the branch checked out here (default: main)"),
)
def retrain_pr(args: argparse.Namespace) -> int:
    from pr2prod.github.api import GitHub
    from pr2prod.monitor.retrain import propose_retraining
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    settings, schema = load_settings(), load_schema(paths.SCHEMA)
    with GitHub.from_environment() as github:
        done = propose_retraining(github, args.labelled, settings.data.file, schema, args.base)
    action = "opened" if done.opened else "updated"
    print(f"retrain-pr: {done.rows} labelled rows added; {action} {done.url}")
    return 0


@command(
    "monitor-demo",
    "serve the bento, send unshifted then shifted traffic, monitor both, stop everything",
    arg("--feature", help="the numeric feature to shift (default: the schema's first)"),
    arg("--output", type=Path, default=paths.MONITOR_DIR / "demo", help="where reports go"),
)
def monitor_demo(args: argparse.Namespace) -> int:
    from pr2prod.monitor.demo import run_demo
    from pr2prod.monitor.report import MARKDOWN, version_summary
    from pr2prod.release.bento import built_bento_tag
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    schema = load_schema(paths.SCHEMA)
    feature = args.feature or schema.numeric_features[0]
    print(
        f"monitor-demo: serving the bento; the held-out rows with their true labels, then "
        f"{feature} shifted, then the held-out rows with labels that no longer match ..."
    )
    result = run_demo(built_bento_tag(), schema, load_settings(), args.output, feature)
    phases = [("held-out rows, labelled", result.clean), (f"{feature} shifted", result.shifted)]
    if result.relabelled is not None:  # a regressor has no classes to change
        phases.append(("labels changed", result.relabelled))
    for phase, report in phases:
        for version in report.versions:
            print(f"monitor-demo: {phase}: {version_summary(version)}")
    names = ("clean", "shifted", "relabelled")[: len(phases)]
    reports = ", ".join(str(args.output / name / MARKDOWN) for name in names)
    print(f"monitor-demo: reports in {reports}; the service is stopped")
    return 0


@command(
    "alert-rules",
    "write Prometheus alerting rules (drift, service health) for the current model's reference",
    arg("--selector", default="", help='matchers of the service\'s series, e.g. job="pr2prod"'),
    arg("--window", default="1h", help="the drift rules' window, a Prometheus duration"),
    arg(
        "--label-window",
        default="1d",
        help="the live-performance rule's window of labelled predictions (POST /feedback)",
    ),
    arg(
        "--reference",
        type=Path,
        help="a reference.json (default: the current model's, from the local model store)",
    ),
    arg("--model-version", help="the version the reference is for (with --reference)"),
    arg("--output", type=Path, default=ALERT_RULES, help="the rules file to write"),
)
def alert_rules(args: argparse.Namespace) -> int:
    import yaml

    from pr2prod.monitor.alert_rules import alert_rules as rules_for
    from pr2prod.monitor.references import stored_reference
    from pr2prod.release.bento import expected_tags
    from pr2prod.serving.reference import Reference
    from pr2prod.settings import load_settings

    duration_seconds(args.window)  # the same units as Prometheus's durations
    duration_seconds(args.label_window)
    if args.reference:
        if not args.model_version:
            raise Pr2prodError(
                "--reference needs --model-version",
                hint="the version of the model whose bundle holds that reference.json",
            )
        references = {args.model_version: Reference.load(args.reference)}
    else:
        version = expected_tags()[0].split(":")[1]
        references = {version: stored_reference(version)}
    settings = load_settings()
    rules = rules_for(
        references,
        settings.monitor,
        settings.canary.thresholds,
        args.selector,
        args.window,
        settings.gate,
        args.label_window,
    )
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(yaml.safe_dump(rules, sort_keys=False, width=120))
    count = sum(len(group["rules"]) for group in rules["groups"])
    print(f"alert-rules: {count} rules for model {', '.join(references)} in {args.output}")
    return 0
