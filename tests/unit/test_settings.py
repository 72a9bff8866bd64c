"""params.yaml is read into typed settings, and every mistake in it is named with a way out."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from conftest import FIXTURES, REPO_ROOT

from pr2prod.cli import main
from pr2prod.errors import Pr2prodError
from pr2prod.settings import (
    CanarySettings,
    DataSettings,
    GateRule,
    ReportSettings,
    ServingPolicy,
    SettingError,
    Settings,
    Thresholds,
    load_settings,
    parse_section,
    parse_settings,
    rewrite_params,
)

TEMPLATE = (REPO_ROOT / "params.yaml").read_text()
REQUIRED_ONLY = """
seed: 3
data: {file: data/x.csv}
split: {test_size: 0.3}
train: {estimator: sklearn.linear_model.LogisticRegression}
"""


def edited(old: str, new: str) -> str:
    """The template's params.yaml with one edit (which must apply)."""
    assert TEMPLATE.count(old) == 1, old
    return TEMPLATE.replace(old, new)


def problem(text: str) -> str:
    with pytest.raises(Pr2prodError) as raised:
        parse_settings(text, where="params.yaml")
    assert "docs/settings.md" in raised.value.hint
    return str(raised.value)


def test_the_template_and_the_fixture_params_load() -> None:
    template = load_settings(REPO_ROOT / "params.yaml")
    fixture = load_settings(FIXTURES / "mixed" / "params.yaml")

    assert template.seed == 42 and template.data.file == Path("data/breast_cancer.csv")
    assert template.train.hyperparameters["n_estimators"] == 200
    assert template.gate["log_loss"] == GateRule("lower", max=0.3, max_regression=0.05)
    assert template.gate["log_loss"].limit == 0.3 and not template.gate["log_loss"].higher_is_better
    assert template.canary.steps == (10, 25, 50, 100)
    assert template.canary.thresholds.model_time_ratio == 3.0
    assert fixture.train.estimator == "sklearn.linear_model.LogisticRegression"
    assert fixture.split.test_size == 0.25


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "  window_seconds: 20",
            "  window_secnds: 20",
            "canary.window_secnds is not a setting; did you mean canary.window_seconds?",
        ),
        (
            "    error_rate_max: 0.05",
            "    error_rate_mx: 0.05",
            "canary.thresholds.error_rate_mx is not a setting; "
            "did you mean canary.thresholds.error_rate_max?",
        ),
        (
            "  max_records: 1000",
            "  max_record: 1000",
            "serving.max_record is not a setting; did you mean serving.max_records?",
        ),
        ("\ntrain:\n", "\ntrian:\n", "trian is not a setting; did you mean train?"),
        (
            "{direction: higher, min: 0.90, max_regression: 0.02}\n  f1",
            "{direction: higher, min: 0.90, max_regresion: 0.02}\n  f1",
            "gate.accuracy.max_regresion is not a setting; "
            "did you mean gate.accuracy.max_regression?",
        ),
    ],
)
def test_a_misspelt_setting_is_named_with_the_nearest_real_one(
    old: str, new: str, message: str
) -> None:
    assert problem(edited(old, new)) == f"params.yaml: {message}"


def test_an_unknown_setting_with_no_near_miss_lists_the_real_ones() -> None:
    message = problem(edited("  workers: 1", "  processes: 1"))

    assert message == (
        "params.yaml: serving.processes is not a setting; the settings under serving are "
        "out_of_range, unseen_category, max_records, max_body_bytes, max_batch_size, "
        "max_latency_ms, workers, value_rtol, value_atol"
    )


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "window_seconds: 20",
            "window_seconds: twenty",
            "canary.window_seconds must be a number, not 'twenty'",
        ),
        ("seed: 42", "seed: true", "seed must be a whole number, not true"),
        (
            "max_records: 1000",
            "max_records: 10.5",
            "serving.max_records must be a whole number, not 10.5",
        ),
        (
            "retry_on_stable: true",
            "retry_on_stable: 1",
            "canary.retry_on_stable must be true or false, not 1",
        ),
        (
            "out_of_range: reject",
            "out_of_range: drop",
            "serving.out_of_range must be 'reject' or 'warn', not 'drop'",
        ),
        ("steps: [10, 25, 50, 100]", "steps: 100", "canary.steps must be a list, not 100"),
        (
            "steps: [10, 25, 50, 100]",
            "steps: [10, half, 100]",
            "canary.steps[1] must be a whole number, not 'half'",
        ),
        (
            "file: data/breast_cancer.csv",
            "file: [a.csv, b.csv]",
            "data.file must be a path, not ['a.csv', 'b.csv']",
        ),
        ("estimator: sklearn", "estimator: 3 # sklearn", "train.estimator must be text, not 3"),
    ],
)
def test_a_value_of_the_wrong_type_says_what_was_expected(old: str, new: str, message: str) -> None:
    assert problem(edited(old, new)) == f"params.yaml: {message}"


def test_a_number_yaml_read_as_text_is_explained() -> None:
    message = problem(edited("drift_threshold: 0.2", "drift_threshold: 1e-3"))

    assert message.startswith("params.yaml: report.drift_threshold must be a number, not '1e-3'")
    assert "1.0e-3" in message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (REQUIRED_ONLY.replace("seed: 3", ""), "seed is missing (it has no default)"),
        (REQUIRED_ONLY.replace("data: {file: data/x.csv}", ""), "data.file is missing"),
        (REQUIRED_ONLY.replace("{estimator:", "{estimators:"), "train.estimators is not"),
        (REQUIRED_ONLY + "canary: [10, 100]", "canary must be a mapping of settings, not [10,"),
        (
            REQUIRED_ONLY.replace(
                "LogisticRegression}", "LogisticRegression, hyperparameters: [C]}"
            ),
            "train.hyperparameters must be a mapping, not ['C']",
        ),
    ],
)
def test_a_missing_setting_or_a_malformed_section_is_named(text: str, message: str) -> None:
    assert problem(text).startswith(f"params.yaml: {message}")


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        ("{direction: up}", "gate.recall.direction must be 'higher' or 'lower', not 'up'"),
        ("{min: 0.9}", "gate.recall.direction is missing"),
        (
            "{direction: higher, max: 0.9}",
            "gate.recall.max does not apply when higher is better: the limit is 'min'",
        ),
        (
            "{direction: lower, min: 0.1}",
            "gate.recall.min does not apply when lower is better: the limit is 'max'",
        ),
        (
            "{direction: higher, max_regression: -0.1}",
            "gate.recall.max_regression must be zero or more, not -0.1",
        ),
        ("{direction: higher, minimum: 0.9}", "gate.recall.minimum is not a setting"),
    ],
)
def test_gate_rules_are_checked_key_by_key(rule: str, message: str) -> None:
    assert problem(f"{REQUIRED_ONLY}gate:\n  recall: {rule}\n").startswith(
        f"params.yaml: {message}"
    )


def test_any_metric_may_have_a_gate_rule() -> None:
    text = f"{REQUIRED_ONLY}gate:\n  balanced_accuracy: {{direction: higher}}\n"

    settings = parse_settings(text, where="params.yaml")

    assert settings.gate == {"balanced_accuracy": GateRule("higher")}


def test_every_section_but_the_required_settings_has_defaults() -> None:
    settings = parse_settings(REQUIRED_ONLY, where="params.yaml")

    assert settings.report == ReportSettings()
    assert settings.gate == {}
    assert settings.serving == ServingPolicy()
    assert settings.canary == CanarySettings()
    assert settings.train.hyperparameters == {}


def test_a_partial_section_keeps_the_defaults_of_what_it_leaves_out() -> None:
    text = f"{REQUIRED_ONLY}canary:\n  window_seconds: 5\n  thresholds: {{error_rate_max: 0.1}}\n"

    canary = parse_settings(text, where="params.yaml").canary

    assert canary == CanarySettings(window_seconds=5.0, thresholds=Thresholds(error_rate_max=0.1))
    assert isinstance(canary.window_seconds, float)  # an int in YAML, a float setting


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ("test_size: 0.2", "test_size: 1.5", "split.test_size must be between 0 and 1, not 1.5"),
        ("confidence: 0.95", "confidence: 95", "report.confidence must be between 0 and 1"),
        ("steps: [10, 25, 50, 100]", "steps: [10, 50, 25, 100]", "canary.steps must rise"),
        ("steps: [10, 25, 50, 100]", "steps: [10, 25, 50]", "canary.steps must rise and end"),
        ("steps: [10, 25, 50, 100]", "steps: [0, 100]", "canary.steps must rise"),
    ],
)
def test_values_outside_a_sections_rules_are_refused(old: str, new: str, message: str) -> None:
    assert problem(edited(old, new)).startswith(f"params.yaml: {message}")


def test_settings_made_in_code_obey_the_same_rules() -> None:
    with pytest.raises(SettingError, match="steps must rise"):
        replace(CanarySettings(), steps=(50, 25, 100))
    with pytest.raises(SettingError, match="limit is 'max'"):
        GateRule("lower", min=0.5)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("seed: [42", "params.yaml is not valid YAML"),
        ("- seed\n- data\n", "params.yaml must be a mapping of settings, not ['seed', 'data']"),
    ],
)
def test_a_file_that_is_not_a_mapping_of_settings_is_refused(text: str, message: str) -> None:
    assert problem(text).startswith(message)


def test_a_base_revisions_data_file_is_read_whatever_its_other_sections_hold() -> None:
    older = edited("  window_seconds: 20", "  window_length: 20")  # a setting since renamed

    assert parse_section(older, DataSettings, where="main:params.yaml").file == Path(
        "data/breast_cancer.csv"
    )
    with pytest.raises(Pr2prodError, match=r"^main:params.yaml: data.file is missing"):
        parse_section("seed: 1\n", DataSettings, where="main:params.yaml")


def test_rewriting_params_changes_only_what_is_asked_and_keeps_the_file_valid(
    tmp_path: Path,
) -> None:
    path = tmp_path / "params.yaml"
    path.write_text(TEMPLATE)
    original = load_settings(path)

    rewritten = rewrite_params(path, {"seed": 43, "canary.window_seconds": 5})

    assert load_settings(path) == rewritten
    assert rewritten == replace(
        original, seed=43, canary=replace(original.canary, window_seconds=5.0)
    )
    before = path.read_text()
    with pytest.raises(Pr2prodError, match=r"canary\.window_secnds is not a setting"):
        rewrite_params(path, {"canary.window_secnds": 5})
    assert path.read_text() == before  # nothing written


def test_a_command_reading_params_stops_on_a_misspelt_setting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "params.yaml").write_text(edited("  window_seconds: 20", "  window_secnds: 20"))
    monkeypatch.chdir(tmp_path)

    status = main(["validate"])

    error = capsys.readouterr().err
    assert status != 0
    assert "canary.window_secnds is not a setting; did you mean canary.window_seconds?" in error
    assert "docs/settings.md" in error
    assert not (tmp_path / "results").exists()  # stopped before doing anything


def test_settings_are_frozen() -> None:
    settings = parse_settings(REQUIRED_ONLY, where="params.yaml")

    with pytest.raises(AttributeError):
        settings.seed = 4  # type: ignore[misc]
    assert isinstance(settings, Settings)


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("value_rtol: -1.0e-6", "serving.value_rtol must be at least 0 and below 1, not -1e-06"),
        ("value_atol: tiny", "serving.value_atol must be a number, not 'tiny'"),
        ("value_atol: 1.5", "serving.value_atol must be at least 0 and below 1, not 1.5"),
    ],
)
def test_the_value_tolerance_is_checked(setting: str, message: str) -> None:
    assert problem(f"{REQUIRED_ONLY}serving:\n  {setting}\n").startswith(f"params.yaml: {message}")
