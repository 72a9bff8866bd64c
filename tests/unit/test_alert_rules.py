"""The generated Prometheus rules: valid for promtool, and firing on drift, not on noise.

`promtool test rules` evaluates the rules over synthetic counter series, as a Prometheus
server would: model version "steady" gets traffic in the reference's proportions (with the
unevenness of real traffic), version "moved" gets one feature shifted, more server errors,
a readiness probe that answered 503, and labelled predictions (POST /feedback) right less
often than on the test split. Only "moved" may alarm.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import system_program

from pr2prod.monitor.alert_rules import (
    PREDICTED_CLASS,
    alert_rules,
    drift_threshold,
    smoothed_shares,
)
from pr2prod.release.reference import quantile_edges
from pr2prod.serving.reference import (
    CategoricalReference,
    NumericReference,
    PredictionReference,
    Reference,
    ValueReference,
)
from pr2prod.settings import GateRule, MonitorSettings, Thresholds

REFERENCE = Reference(
    rows=400,
    features={
        "size": NumericReference(edges=(1.0, 2.0, 3.0), counts=(100, 100, 100, 100), missing=0),
        "colour": CategoricalReference(counts={"red": 240, "blue": 160}, missing=0),
    },
    predictions=PredictionReference(
        rows=100,
        classes={"yes": 50, "no": 50},
        probability_bounds=(0.5, 1.0),
        probabilities={"yes": (50, 50), "no": (50, 50)},
        confusion={"yes": {"yes": 48, "no": 2}, "no": {"yes": 2, "no": 48}},  # accuracy 0.96
        positive_class="yes",
    ),
)
GATE = {"accuracy": GateRule("higher", min=0.9, max_regression=0.02)}  # floor 0.94
# Records per minute in each bin. "steady" is uneven but within the reference's noise.
STEADY = {
    "size": {"0": 4, "1": 6, "2": 5, "3": 5, "__missing__": 0},
    "colour": {"red": 13, "blue": 7, "__unseen__": 0, "__missing__": 0},
    PREDICTED_CLASS: {"yes": 11, "no": 9},
}
MOVED = STEADY | {"size": {"0": 1, "1": 3, "2": 6, "3": 10, "__missing__": 0}}
# Labelled predictions per minute, (predicted, actual): 95% right, then 80% right.
STEADY_LABELS = {("yes", "yes"): 10, ("no", "no"): 9, ("yes", "no"): 1, ("no", "yes"): 0}
WORSE_LABELS = {("yes", "yes"): 8, ("no", "no"): 8, ("yes", "no"): 2, ("no", "yes"): 2}


def feedback_series(version: str, per_minute: dict[tuple[str, str], int]) -> list[dict]:
    return [
        {
            "series": f'pr2prod_feedback_total{{predicted_class="{predicted}", '
            f'actual_class="{actual}", model_version="{version}", job="svc"}}',
            "values": f"0+{rate}x60",
        }
        for (predicted, actual), rate in per_minute.items()
    ]


def counter_series(version: str, per_minute: dict[str, dict[str, int]]) -> list[dict]:
    series = []
    for feature, bins in per_minute.items():
        for label, rate in bins.items():
            if feature == PREDICTED_CLASS:
                name = f'pr2prod_predictions_total{{predicted_class="{label}"'
            else:
                name = f'pr2prod_feature_values_total{{feature="{feature}", bin="{label}"'
            series.append(
                {
                    "series": f'{name}, model_version="{version}", job="svc"}}',
                    "values": f"0+{rate}x60",
                }
            )
    return series


def requests_series(version: str, code: str, endpoint: str, rate: int) -> dict:
    labels = f'endpoint="{endpoint}", http_response_code="{code}", service_version="{version}"'
    return {
        "series": f'bentoml_service_request_total{{{labels}, job="svc"}}',
        "values": f"0+{rate}x60",
    }


@pytest.fixture(scope="module")
def rules_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rules = alert_rules(
        {"steady": REFERENCE, "moved": REFERENCE},
        MonitorSettings(alpha=0.01, min_rows=200),
        Thresholds(),
        'job="svc"',
        window="30m",
        gate=GATE,
        label_window="30m",
    )
    path = tmp_path_factory.mktemp("rules") / "pr2prod-rules.yaml"
    path.write_text(yaml.safe_dump(rules, sort_keys=False))
    return path


def promtool(*args: str) -> subprocess.CompletedProcess:
    binary = system_program("promtool", "install it with `apt-get install -y prometheus`")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120)


def test_promtool_accepts_the_generated_rules(rules_file: Path) -> None:
    checked = promtool("check", "rules", str(rules_file))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "SUCCESS" in checked.stdout


def test_rules_fire_on_the_shifted_version_only(rules_file: Path, tmp_path: Path) -> None:
    # The expected alerts are compared with their annotations too; the test checks what
    # decides (expressions, labels, `for:`), so it runs on a copy without annotations
    # (`promtool check rules` above checks their templates).
    rules = yaml.safe_load(rules_file.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)
    bare = tmp_path / "rules.yaml"
    bare.write_text(yaml.safe_dump(rules))
    series = counter_series("steady", STEADY) + counter_series("moved", MOVED)
    series += feedback_series("steady", STEADY_LABELS) + feedback_series("moved", WORSE_LABELS)
    series += [
        requests_series("steady", "200", "/predict", 20),
        requests_series("moved", "200", "/predict", 20),
        requests_series("moved", "500", "/predict", 3),
        requests_series("steady", "200", "/readyz", 1),
        requests_series("moved", "503", "/readyz", 1),
    ]

    severity = {"severity": "warning"}
    cases = {
        "rule_files": [str(bare)],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": series,
                "alert_rule_test": [
                    {
                        "eval_time": "45m",
                        "alertname": "Pr2prodFeatureDrift",
                        "exp_alerts": [
                            {"exp_labels": {"feature": "size", "model_version": "moved"} | severity}
                        ],
                    },
                    # 20 records a minute reach min_rows (200) after 10 minutes, then `for: 5m`.
                    {"eval_time": "12m", "alertname": "Pr2prodFeatureDrift", "exp_alerts": []},
                    {"eval_time": "45m", "alertname": "Pr2prodPredictionDrift", "exp_alerts": []},
                    {
                        "eval_time": "45m",
                        "alertname": "Pr2prodLivePerformance",
                        "exp_alerts": [{"exp_labels": {"model_version": "moved"} | severity}],
                    },
                    # 20 labels a minute reach min_rows (200) after 10 minutes.
                    {"eval_time": "9m", "alertname": "Pr2prodLivePerformance", "exp_alerts": []},
                    {
                        "eval_time": "45m",
                        "alertname": "Pr2prodErrorRate",
                        "exp_alerts": [
                            {"exp_labels": {"service_version": "moved", "severity": "critical"}}
                        ],
                    },
                    {
                        "eval_time": "45m",
                        "alertname": "Pr2prodNotReady",
                        "exp_alerts": [
                            {"exp_labels": {"service_version": "moved", "severity": "critical"}}
                        ],
                    },
                ],
            }
        ],
    }
    test_file = tmp_path / "cases.yaml"
    test_file.write_text(yaml.safe_dump(cases, sort_keys=False))
    tested = promtool("test", "rules", str(test_file))
    assert tested.returncode == 0, tested.stdout + tested.stderr


def test_thresholds_grow_with_bins_and_findings() -> None:
    assert drift_threshold(11, 31, 0.01) > drift_threshold(3, 31, 0.01)
    assert drift_threshold(11, 31, 0.01) > drift_threshold(11, 1, 0.01)


def test_the_statistic_on_clean_traffic_passes_its_threshold_at_most_alpha_of_the_time() -> None:
    # The drift rules' statistic, as the module docstring writes it, on a reference of 455
    # training rows (ten bins and no missing value, as the sample data's features) and 1000
    # live records from the same population: its threshold must hold its false alarms.
    rng = np.random.default_rng(7)
    alpha, runs, rows, live_rows = 0.1, 1000, 455, 1000
    alarms = 0
    for _ in range(runs):
        training = rng.normal(size=rows)
        edges = quantile_edges(training, 10)
        counts = np.bincount(np.searchsorted(edges, training), minlength=len(edges) + 1)
        bins = {str(i): int(n) for i, n in enumerate(counts)} | {"__missing__": 0}
        shares = np.array(list(smoothed_shares(bins).values()))
        live = np.bincount(
            np.searchsorted(edges, rng.normal(size=live_rows)), minlength=len(counts)
        )
        live = np.append(live, 0)
        expected = live_rows * shares
        statistic = ((live - expected) ** 2 / expected).sum() / (1 + live_rows / rows)
        alarms += statistic > drift_threshold(len(bins), 1, alpha)
    # Binomial(1000, 0.1) stays below 0.13 but once in ~1,000 seeds; this one is fixed.
    assert alarms / runs < alpha + 0.03


def test_a_regressors_rules_judge_its_features_and_leave_its_values_to_the_monitor() -> None:
    regressor = Reference(
        rows=REFERENCE.rows,
        features=REFERENCE.features,
        predictions=ValueReference(rows=100, value_bounds=(90.0, 150.0), values=(30, 40, 30)),
    )
    monitor = MonitorSettings()

    rules = alert_rules({"r": regressor}, monitor, Thresholds(), 'job="x"', "1h", GATE)

    (reference_group,) = [g for g in rules["groups"] if g["name"] == "pr2prod-reference"]
    constants = reference_group["rules"]
    judged = {rule["labels"]["feature"] for rule in constants}
    assert judged == {"size", "colour"}  # no predicted-class finding, no accuracy floor
    assert "pr2prod-performance" not in [group["name"] for group in rules["groups"]]
    limits = [r for r in constants if r["record"] == "pr2prod:drift_threshold"]
    assert [r["labels"]["feature"] for r in limits] == ["size", "colour"]
    # Two findings, so each is held to alpha / 2.
    assert float(limits[0]["expr"].removeprefix("vector(").removesuffix(")")) == pytest.approx(
        drift_threshold(5, 2, monitor.alpha), rel=1e-4
    )
