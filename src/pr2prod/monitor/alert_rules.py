"""Prometheus alerting rules from a model's reference: drift and service health, live.

`pr2prod monitor` judges drift when something runs it; these rules let Prometheus (and
Alertmanager) judge it every minute with no job of ours in between. PromQL has no G-test or
Fisher's test, so the drift rules use what it can compute: a two-sample chi-square
statistic over each feature's bins.

Per feature (and the predicted classes, as one more "feature") and model version, over a
sliding window W:

    n_b   live records in bin b (increase of the counter over W), N = sum of n_b
    p_b   the reference's share of bin b, smoothed: (count_b + 1/2) / (M + k/2), so a bin
          the training rows never reached (a new category, missing values) has a small
          share instead of none, and a handful of such records is not an alarm
    X2    = sum_b (n_b - N p_b)^2 / (N p_b) / (1 + N / M)

The last factor accounts for the reference being a sample of M rows, not the population: the
variance of a live share against a reference share is the sum of both samples' variances.
X2 is compared with the chi-square quantile for k - 1 degrees of freedom at alpha / F (F the
findings of a version, as in the monitor's Bonferroni), and counts only with at least
`min_rows` live records. It approximates the monitor's tests; the monitor's report stays the
one to read once an alert fires.

Live performance, once true labels come back (POST /feedback counts a confusion matrix per
version): over a label window L, the live accuracy n_correct / n is compared with its
floor f, the test split's accuracy minus the gate's `max_regression` for accuracy (or the
gate's `min`, if higher), as a one-sided binomial test: it alarms when

    n_correct / n  <  f - z * sqrt(f (1 - f) / n),   z the normal quantile at 1 - alpha

with at least `min_rows` labelled predictions in the window. The test split's own noise
is left out here (a constant threshold); the monitor's report bootstraps both sides.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from scipy import stats

from pr2prod.monitor.performance import confusion_matrix, confusion_metrics
from pr2prod.serving.reference import PredictionReference, Reference, ValueReference
from pr2prod.settings import GateRule, MonitorSettings, Thresholds

# The predicted classes go through the same rules as the features, under this feature name.
PREDICTED_CLASS = "__predicted_class__"
# BentoML's probes and /metrics are counted with the API's requests; health rules skip them.
PROBES = "/(healthz|livez|readyz|metrics)"
SMOOTHING = 0.5  # pseudo-count added to every reference bin (Jeffreys)
HEALTH_WINDOW = "5m"

COUNTS = "pr2prod:drift_counts"
ROWS = "pr2prod:drift_rows"
EXPECTED = "pr2prod:drift_expected"
STATISTIC = "pr2prod:drift_chi2"
SHARE = "pr2prod:reference_share"
REFERENCE_ROWS = "pr2prod:reference_rows"
THRESHOLD = "pr2prod:drift_threshold"
LABELLED = "pr2prod:feedback_labelled"
CORRECT = "pr2prod:feedback_correct"
ACCURACY_FLOOR = "pr2prod:accuracy_floor"
BIN = "feature, bin, model_version"
FEATURE = "feature, model_version"


def alert_rules(
    references: Mapping[str, Reference],
    monitor: MonitorSettings,
    thresholds: Thresholds,
    selector: str,
    window: str,
    gate: Mapping[str, GateRule] | None = None,
    label_window: str = "1d",
) -> dict[str, Any]:
    """The rules file (as YAML data) for the model versions in `references`.

    `selector`: label matchers of the service's series (e.g. `job="pr2prod"`), empty for all;
    `window`: the drift window, a Prometheus duration (e.g. 1h); `gate`: the quality gate,
    whose accuracy rule sets live accuracy's floor (none, or no accuracy rule: no
    performance rules); `label_window`: the window of labelled predictions.
    """
    floors = accuracy_floors(references, gate or {})
    constants = reference_rules(references, monitor) + [
        _constant(ACCURACY_FLOOR, floor, {"model_version": version})
        for version, floor in floors.items()
    ]
    groups = [
        {"name": "pr2prod-reference", "rules": constants},
        {"name": "pr2prod-drift", "rules": drift_rules(selector, window, monitor)},
    ]
    if floors:
        classes = sorted(
            {
                label
                for reference in references.values()
                if isinstance(reference.predictions, PredictionReference)
                for label in reference.predictions.classes
            }
        )
        rules = performance_rules(selector, label_window, classes, monitor)
        groups.append({"name": "pr2prod-performance", "rules": rules})
    groups.append({"name": "pr2prod-health", "rules": health_rules(selector, thresholds)})
    return {"groups": groups}


def accuracy_floors(
    references: Mapping[str, Reference], gate: Mapping[str, GateRule]
) -> dict[str, float]:
    """Per version, the live accuracy below which the gate's accuracy rule is broken."""
    rule = gate.get("accuracy")
    if rule is None or (rule.max_regression is None and rule.limit is None):
        return {}
    floors = {}
    for version, reference in references.items():
        predictions = reference.predictions
        if isinstance(predictions, ValueReference) or not predictions.confusion:
            continue  # a regressor's, or made before references kept the confusion matrix
        cells = {(a, p): n for a, row in predictions.confusion.items() for p, n in row.items()}
        matrix = confusion_matrix(cells, list(predictions.classes))
        accuracy = float(confusion_metrics(matrix, None)["accuracy"])
        candidates = [accuracy - rule.max_regression] if rule.max_regression is not None else []
        candidates += [rule.limit] if rule.limit is not None else []
        floors[version] = max(candidates)
    return floors


def performance_rules(
    selector: str, label_window: str, classes: list[str], monitor: MonitorSettings
) -> list[dict]:
    feedback = "pr2prod_feedback_total"
    diagonal = (
        _matchers(selector, f'predicted_class="{label}"', f'actual_class="{label}"')
        for label in classes
    )
    # One selector per class picks the confusion matrix's diagonal; `or` joins the series.
    correct = " or ".join(f"increase({feedback}{cell}[{label_window}])" for cell in diagonal)
    z = float(stats.norm.isf(monitor.alpha))
    by = "sum by (model_version)"
    bound = (
        f"({ACCURACY_FLOOR} - on(model_version) {z:.4g} * sqrt({ACCURACY_FLOOR} * "
        f"(1 - {ACCURACY_FLOOR}) / on(model_version) {LABELLED}))"
    )
    return [
        {
            "record": LABELLED,
            "expr": f"{by} (increase({feedback}{_matchers(selector)}[{label_window}]))",
        },
        {"record": CORRECT, "expr": f"{by} ({correct})"},
        {
            "alert": "Pr2prodLivePerformance",
            "expr": f"{CORRECT} / on(model_version) {LABELLED} < on(model_version) {bound}"
            f" and on(model_version) {LABELLED} >= {monitor.min_rows}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Live accuracy of model {{ $labels.model_version }} is "
                "{{ $value | humanizePercentage }}",
                "description": f"Over the last {label_window}, the labelled predictions "
                "(POST /feedback) show an accuracy below what the quality gate allows "
                "against the model's test split. Run `make monitor` for the live metrics "
                "with their intervals, then see docs/monitoring.md, 'What to do about an "
                "alarm'.",
            },
        },
    ]


def reference_bins(reference: Reference) -> dict[str, dict[str, int]]:
    """Counts per bin of every finding: each feature's, and the predicted classes'.

    A regressor's predicted values are judged by `pr2prod monitor` only: their histogram is
    cumulative, and its buckets' own counts are differences PromQL cannot take by label.
    """
    bins = {name: feature.bins() for name, feature in reference.features.items()}
    if not isinstance(reference.predictions, ValueReference):
        bins[PREDICTED_CLASS] = dict(reference.predictions.classes)
    return bins


def smoothed_shares(counts: Mapping[str, int]) -> dict[str, float]:
    total = sum(counts.values()) + SMOOTHING * len(counts)
    return {label: (count + SMOOTHING) / total for label, count in counts.items()}


def drift_threshold(bins: int, findings: int, alpha: float) -> float:
    """The chi-square quantile an X2 over `bins` bins must pass to alarm."""
    return float(stats.chi2.isf(alpha / findings, df=max(bins - 1, 1)))


def reference_rules(references: Mapping[str, Reference], monitor: MonitorSettings) -> list[dict]:
    """Constant series: the reference's shares, rows and thresholds, per model version."""
    rules: list[dict] = []
    for version, reference in references.items():
        findings = reference_bins(reference)
        for name, counts in findings.items():
            feature = {"feature": name, "model_version": version}
            for label, share in smoothed_shares(counts).items():
                rules.append(_constant(SHARE, share, feature | {"bin": label}))
            rules.append(_constant(REFERENCE_ROWS, sum(counts.values()), feature))
            limit = drift_threshold(len(counts), len(findings), monitor.alpha)
            rules.append(_constant(THRESHOLD, limit, feature))
    return rules


def drift_rules(selector: str, window: str, monitor: MonitorSettings) -> list[dict]:
    features = f"pr2prod_feature_values_total{_matchers(selector)}"
    predictions = f"pr2prod_predictions_total{_matchers(selector)}"
    predicted = (
        f'label_replace(label_replace(increase({predictions}[{window}]), "feature", '
        f'"{PREDICTED_CLASS}", "", ""), "bin", "$1", "predicted_class", "(.*)")'
    )
    min_rows = monitor.min_rows
    statistic = (
        f"sum by ({FEATURE}) ((({COUNTS} or on({BIN}) 0 * {EXPECTED}) - on({BIN}) {EXPECTED})"
        f" ^ 2 / on({BIN}) {EXPECTED})"
        f" / on({FEATURE}) (1 + {ROWS} / on({FEATURE}) {REFERENCE_ROWS})"
    )

    def alarm(which: str) -> str:
        return (
            f'{STATISTIC}{{feature{which}"{PREDICTED_CLASS}"}} > on({FEATURE}) {THRESHOLD}'
            f" and on({FEATURE}) {ROWS} >= {min_rows}"
        )

    what = "the live counts are unlikely under the model's reference"
    return [
        {
            "record": COUNTS,
            "expr": f"sum by ({BIN}) (increase({features}[{window}]))"
            f" or sum by ({BIN}) ({predicted})",
        },
        {"record": ROWS, "expr": f"sum by ({FEATURE}) ({COUNTS})"},
        {"record": EXPECTED, "expr": f"{ROWS} * on({FEATURE}) group_right {SHARE}"},
        {"record": STATISTIC, "expr": statistic},
        {
            "alert": "Pr2prodFeatureDrift",
            "expr": alarm("!="),
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Feature {{ $labels.feature }} drifted "
                "(model {{ $labels.model_version }})",
                "description": f"Over the last {window}, {what} for this feature "
                '(chi-square {{ $value | printf "%.1f" }}). Run `make monitor` for the report '
                "and see docs/monitoring.md, 'What to do about an alarm'.",
            },
        },
        {
            "alert": "Pr2prodPredictionDrift",
            "expr": alarm("="),
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Predicted classes drifted (model {{ $labels.model_version }})",
                "description": f"Over the last {window}, the shares of predicted classes are "
                "unlikely under the model's test-set predictions (chi-square "
                '{{ $value | printf "%.1f" }}). Run `make monitor` for the report.',
            },
        },
    ]


def health_rules(selector: str, thresholds: Thresholds) -> list[dict]:
    api = f'endpoint!~"{PROBES}"'
    requests = "bentoml_service_request_total" + _matchers(selector, api)
    errors = "bentoml_service_request_total" + _matchers(selector, api, 'http_response_code=~"5.."')
    durations = "bentoml_service_request_duration_seconds_bucket" + _matchers(selector, api)
    not_ready = "bentoml_service_request_total" + _matchers(
        selector, 'endpoint="/readyz", http_response_code="503"'
    )
    by = "sum by (service_version)"
    return [
        {
            "alert": "Pr2prodErrorRate",
            "expr": f"{by} (rate({errors}[{HEALTH_WINDOW}])) / {by} (rate({requests}"
            f"[{HEALTH_WINDOW}])) > {thresholds.error_rate_max}",
            "for": "5m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Version {{ $labels.service_version }} answers 5xx to "
                "{{ $value | humanizePercentage }} of requests",
                "description": "More server errors than the canary cap "
                f"(canary.thresholds.error_rate_max, {thresholds.error_rate_max}). Read the "
                "service's log; roll back with `make rollback` if a release caused it.",
            },
        },
        {
            "alert": "Pr2prodLatencyP99",
            "expr": f"histogram_quantile(0.99, sum by (service_version, le) (rate({durations}"
            f"[{HEALTH_WINDOW}]))) > {thresholds.latency_p99_max_ms / 1000}",
            "for": "5m",
            "labels": {"severity": "warning"},
            "annotations": {
                "summary": "Version {{ $labels.service_version }} p99 latency is "
                "{{ $value | humanizeDuration }}",
                "description": "Slower than the canary cap (canary.thresholds."
                f"latency_p99_max_ms, {thresholds.latency_p99_max_ms} ms). Check load and "
                "shed requests (503); add workers or replicas.",
            },
        },
        {
            "alert": "Pr2prodNotReady",
            "expr": f"{by} (increase({not_ready}[{HEALTH_WINDOW}])) > 0",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Version {{ $labels.service_version }} answered its readiness "
                "probe with 503",
                "description": "Its model is not loaded or it is shutting down: read the "
                "service's log from its start.",
            },
        },
        {
            "alert": "Pr2prodDown",
            "expr": f"up{_matchers(selector)} == 0",
            "for": "2m",
            "labels": {"severity": "critical"},
            "annotations": {
                "summary": "Prometheus cannot scrape {{ $labels.instance }}",
                "description": "The service does not answer /metrics: it is down or unreachable.",
            },
        },
    ]


def _matchers(*parts: str) -> str:
    inner = ", ".join(part for part in parts if part)
    return "{" + inner + "}" if inner else ""


def _constant(record: str, value: float, labels: Mapping[str, str]) -> dict:
    return {"record": record, "expr": f"vector({value:.6g})", "labels": dict(labels)}
