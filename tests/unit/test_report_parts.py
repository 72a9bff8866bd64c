"""The report's arithmetic: deltas, intervals, directions, gate boundaries, params, drift."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT

from pr2prod.report.bootstrap import Predictions, delta_intervals
from pr2prod.report.build import judge, recorded_test_split, target_change
from pr2prod.report.comparison import MetricRow, compare_metrics, direction
from pr2prod.report.data_section import DataSection
from pr2prod.report.drift import feature_drift
from pr2prod.report.gate import check_gate, check_reproduction
from pr2prod.report.params_diff import diff_params
from pr2prod.report.plots import predicted_vs_actual_plot, residuals_plot
from pr2prod.report.reproducibility import Reproducibility
from pr2prod.schema import DatasetRules, Feature, FeatureSchema, Target
from pr2prod.settings import GateRule

HIGHER = {"accuracy": GateRule("higher", min=0.9, max_regression=0.02)}
LOWER = {"log_loss": GateRule("lower", max=0.3, max_regression=0.05)}


def predictions(correct: list[bool], row_ids: list[str] | None = None) -> Predictions:
    """A binary model's predictions: confident and right where `correct`, wrong elsewhere."""
    actual = ["yes" if index % 2 else "no" for index in range(len(correct))]
    proba_yes = [
        (0.9 if label == "yes" else 0.1) if ok else (0.1 if label == "yes" else 0.9)
        for label, ok in zip(actual, correct, strict=True)
    ]
    frame = pd.DataFrame(
        {
            "row_id": row_ids or [f"{index:04d}" for index in range(len(correct))],
            "actual": actual,
            "proba_no": [1 - p for p in proba_yes],
            "proba_yes": proba_yes,
        }
    )
    return Predictions(frame, ["no", "yes"], "yes")


class TestMetricRows:
    def test_delta_and_change_follow_the_direction(self) -> None:
        better_loss = MetricRow("log_loss", base=0.30, head=0.25, higher_is_better=False)
        worse_accuracy = MetricRow("accuracy", base=0.90, head=0.85, higher_is_better=True)

        assert better_loss.delta == pytest.approx(-0.05)
        assert better_loss.change == "better"
        assert worse_accuracy.change == "worse"
        assert MetricRow("test_rows", 100, 120, higher_is_better=None).change == ""
        assert MetricRow("f1", None, 0.9, higher_is_better=True).delta is None

    def test_an_interval_containing_zero_is_within_noise(self) -> None:
        assert MetricRow("f1", 0.9, 0.91, True, interval=(-0.01, 0.03)).within_noise
        assert not MetricRow("f1", 0.9, 0.95, True, interval=(0.01, 0.09)).within_noise

    def test_directions_come_from_gate_rules_then_defaults(self) -> None:
        flipped = {"recall": GateRule("lower")}
        assert direction("recall", flipped) is False
        assert direction("recall", {}) is True
        assert direction("log_loss", {}) is False
        assert direction("per_class.a.support", {}) is None
        assert direction("test_rows", {}) is None

    def test_metrics_only_in_the_base_are_still_listed(self) -> None:
        rows = compare_metrics({"accuracy": 0.9, "old": 1.0}, {"accuracy": 0.8}, {}, None)

        assert [(row.name, row.base, row.head) for row in rows] == [
            ("accuracy", 0.9, 0.8),
            ("old", 1.0, None),
        ]


class TestBootstrap:
    def test_identical_models_have_a_zero_width_paired_interval(self) -> None:
        model = predictions([True] * 40 + [False] * 10)

        result = delta_intervals(model, model, resamples=200, confidence=0.95, seed=1)

        assert result.pairing == "paired"
        assert result.intervals["accuracy"] == (0.0, 0.0)

    def test_a_clear_improvement_has_an_interval_above_zero(self) -> None:
        base = predictions([True] * 60 + [False] * 40)
        head = predictions([True] * 95 + [False] * 5)  # 35 more rows right

        low, high = delta_intervals(base, head, 500, 0.95, seed=2).intervals["accuracy"]

        assert 0 < low < 0.35 < high

    def test_the_paired_interval_is_narrower_than_the_unpaired_one(self) -> None:
        base = predictions([True] * 80 + [False] * 20)
        head = predictions([True] * 85 + [False] * 15)
        shuffled = predictions(
            [True] * 85 + [False] * 15, row_ids=[f"x{index}" for index in range(100)]
        )

        paired = delta_intervals(base, head, 500, 0.95, seed=3)
        unpaired = delta_intervals(base, shuffled, 500, 0.95, seed=3)

        assert unpaired.pairing == "unpaired" and "the test sets differ" in unpaired.note
        width = {name: high - low for name, (low, high) in paired.intervals.items()}
        unpaired_width = {name: high - low for name, (low, high) in unpaired.intervals.items()}
        assert width["accuracy"] < unpaired_width["accuracy"]

    def test_equal_row_ids_of_different_test_splits_are_not_paired(self) -> None:
        """Row ids are places in the split: a new split with as many rows (and the same
        labels in the same places) must not be paired with the old one."""
        base = predictions([True] * 80 + [False] * 20)
        head = predictions([True] * 85 + [False] * 15)

        known = delta_intervals(base, head, 50, 0.95, seed=3, same_test_split=True)
        other = delta_intervals(base, head, 50, 0.95, seed=3, same_test_split=False)

        assert known.pairing == "paired" and other.pairing == "unpaired"

    def test_the_test_split_is_read_from_dvc_lock(self) -> None:
        lock = (REPO_ROOT / "dvc.lock").read_text()
        digest = recorded_test_split(lock)

        assert digest is not None and len(digest) == 32 and digest in lock
        assert recorded_test_split(None) is None and recorded_test_split("stages: {}") is None


class TestTargetChange:
    def test_the_same_target_compares(self) -> None:
        target = Target("y", ("a", "b"), "a")
        assert target_change(target, Target("y", ("a", "b"), "a")) is None

    @pytest.mark.parametrize(
        "other",
        [Target("z", ("a", "b"), "a"), Target("y", ("a", "b"), "b"), Target("y", ("a", "b", "c"))],
    )
    def test_another_name_positive_class_or_classes_do_not(self, other: Target) -> None:
        why = target_change(Target("y", ("a", "b"), "a"), other)
        assert why is not None and why.startswith("the target changed: y (classes a, b")


class TestGate:
    @pytest.mark.parametrize(("value", "passed"), [(0.9, True), (0.95, True), (0.8999, False)])
    def test_a_floor_is_inclusive(self, value: float, passed: bool) -> None:
        (result,) = check_gate(HIGHER, {"accuracy": value}, base=None)
        assert result.passed is passed

    @pytest.mark.parametrize(("head", "passed"), [(0.93, True), (0.9299, False), (0.99, True)])
    def test_the_largest_allowed_regression_is_inclusive(self, head: float, passed: bool) -> None:
        # 0.95 - 0.93 is 0.020000000000000018 in floating point: still exactly at the limit.
        results = check_gate(HIGHER, {"accuracy": head}, base={"accuracy": 0.95})
        assert results[1].check == "regression vs base <= 0.02"
        assert results[1].passed is passed

    def test_lower_is_better_uses_a_ceiling_and_upward_regressions(self) -> None:
        limit, regression = check_gate(LOWER, {"log_loss": 0.31}, base={"log_loss": 0.25})
        assert not limit.passed and limit.check == "<= 0.3"
        assert not regression.passed  # 0.06 worse than base, 0.05 allowed
        ok = check_gate(LOWER, {"log_loss": 0.2}, base={"log_loss": 0.25})
        assert all(result.passed for result in ok)

    def test_without_a_base_only_limits_are_checked(self) -> None:
        results = check_gate(HIGHER | LOWER, {"accuracy": 0.95, "log_loss": 0.1}, base=None)
        assert [result.check for result in results] == [">= 0.9", "<= 0.3"]

    def test_a_base_for_another_target_leaves_only_absolute_limits_deciding(self) -> None:
        why = "the target changed: a (classes x, y) -> b (classes x, y, z)"
        head, base = {"accuracy": 0.91, "log_loss": 0.29}, {"accuracy": 0.99, "log_loss": 0.01}
        results = check_gate(HIGHER | LOWER, head, base, why)
        limits = [r for r in results if not r.check.startswith("regression")]
        relative = [r for r in results if r.check.startswith("regression")]
        assert [r.passed for r in limits] == [True, True]
        assert [r.passed for r in relative] == [None, None]
        assert all(not r.failed and why in r.value for r in relative)
        reproduced = Reproducibility(["train"], 1.0, exit_status=0)
        unchanged = DataSection(changed=False, base_hash="abc", head_hash="abc")
        verdict = judge(False, unchanged, [*results, check_reproduction(reproduced)], reproduced)
        assert verdict.passed and "(2 not applicable)" in verdict.reason

    def test_an_absolute_limit_still_fails_when_the_base_is_not_comparable(self) -> None:
        results = check_gate(LOWER, {"log_loss": 0.4}, {"log_loss": 0.39}, "the task changed")
        assert [r.passed for r in results] == [False, None]

    def test_a_missing_metric_fails_its_rule(self) -> None:
        (result,) = check_gate(HIGHER, {"f1": 0.9}, base=None)
        assert not result.passed and result.value == "missing"


def test_params_diff_lists_changed_added_and_removed_leaves() -> None:
    base = "seed: 1\ntrain:\n  hyperparameters: {depth: 3, trees: 10}\n"
    head = "seed: 1\ntrain:\n  hyperparameters: {depth: 5, leaves: 2}\n"

    changes = {c.name: (c.base, c.head) for c in diff_params(base, head)}

    assert changes == {
        "train.hyperparameters.depth": (3, 5),
        "train.hyperparameters.leaves": ("(absent)", 2),
        "train.hyperparameters.trees": (10, "(absent)"),
    }
    assert diff_params(head, head) == []


def test_drift_flags_a_shifted_feature_and_not_a_stable_one() -> None:
    rng = np.random.default_rng(0)
    schema = FeatureSchema(
        features=(
            Feature("stable", "numeric"),
            Feature("shifted", "numeric"),
            Feature("colour", "categorical", categories=("red", "blue")),
        ),
        target=Target("y", ("a", "b"), "a"),
        rules=DatasetRules(),
    )
    base = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, 2000),
            "shifted": rng.normal(0, 1, 2000),
            "colour": rng.choice(["red", "blue"], 2000, p=[0.5, 0.5]),
        }
    )
    head = pd.DataFrame(
        {
            "stable": rng.normal(0, 1, 2000),
            "shifted": rng.normal(1.5, 1, 2000),
            "colour": rng.choice(["red", "blue"], 2000, p=[0.9, 0.1]),
        }
    )

    drifts = {d.feature: d for d in feature_drift(base, head, schema, threshold=0.2)}

    assert drifts["shifted"].flagged and drifts["colour"].flagged
    assert not drifts["stable"].flagged and drifts["stable"].psi < 0.05
    assert drifts["colour"].summary.startswith("blue 5")  # the category that moved most
    assert drifts["colour"].summary.endswith("-> 10%")


def regression_predictions(errors: np.ndarray) -> Predictions:
    actual = np.linspace(10, 50, len(errors))
    frame = pd.DataFrame(
        {
            "row_id": [f"{index:04d}" for index in range(len(errors))],
            "actual": actual,
            "predicted": actual - errors,
            "residual": errors,
        }
    )
    return Predictions.from_csv(frame.to_csv(index=False), None, numeric=True)


class TestRegressionReport:
    def test_a_regressor_with_smaller_errors_has_an_rmse_interval_below_zero(self) -> None:
        rng = np.random.default_rng(0)
        noise = rng.normal(0, 1, 200)
        base, head = regression_predictions(noise * 4), regression_predictions(noise * 2)

        found = delta_intervals(base, head, resamples=200, confidence=0.95, seed=1)

        assert found.pairing == "paired"
        assert found.intervals["rmse"][1] < 0 and found.intervals["mae"][1] < 0
        assert found.intervals["r2"][0] > 0

    def test_errors_are_lower_is_better_and_r2_higher(self) -> None:
        for error in ("rmse", "mae", "median_absolute_error", "mape"):
            assert direction(error, {}) is False
        assert direction("r2", {}) is True
        row = MetricRow("rmse", base=3.0, head=2.5, higher_is_better=direction("rmse", {}))
        assert row.change == "better"

    def test_regression_plots_are_drawn_for_base_and_pr(self, tmp_path: Path) -> None:
        frame = pd.DataFrame({"actual": [1.0, 2.0, 3.0], "predicted": [1.1, 1.8, 3.3]})
        text = frame.assign(residual=frame["actual"] - frame["predicted"]).to_csv(index=False)
        both = {"base": text, "PR": text}
        for draw in (predicted_vs_actual_plot, residuals_plot):
            out = draw(both, tmp_path / f"{draw.__name__}.png")
            assert out.stat().st_size > 1000
