"""The gate's reproduction rule: a pull request must commit what its pipeline reproduces.

main reproduces the pipeline and refuses to release when dvc.lock or the metrics differ
from the commit; the same check on the pull request keeps a green PR from breaking main.
"""

from __future__ import annotations

import pytest

from pr2prod.report.build import Report, Verdict, judge
from pr2prod.report.data_section import DataSection
from pr2prod.report.gate import REPRODUCTION, RuleResult, check_reproduction
from pr2prod.report.render import to_markdown
from pr2prod.report.reproducibility import Reproducibility

AS_COMMITTED = Reproducibility(stages_run=["train", "evaluate"], seconds=3.0, exit_status=0)
STALE_LOCK = Reproducibility(
    stages_run=["train", "evaluate"],
    seconds=3.0,
    exit_status=0,
    lock_differences=[
        "train: params params.yaml -> ...",
        "train: outs artifacts/model/model.joblib 1a2b3c4d -> 5e6f7a8b",
    ],
    metric_differences=["accuracy: committed 0.9649 -> reproduced 0.9737"],
)
NO_LOCK = Reproducibility(stages_run=[], seconds=1.0, exit_status=0, committed=False)
UNCHANGED_DATA = DataSection(changed=False, base_hash="abc", head_hash="abc")
ACCURACY_PASSES = RuleResult("accuracy", ">= 0.9", "0.9737", passed=True)


def test_a_reproduction_that_matches_the_commit_passes() -> None:
    rule = check_reproduction(AS_COMMITTED)

    assert rule.passed and rule.metric == REPRODUCTION and rule.value == "as committed"


@pytest.mark.parametrize(("reproducibility", "found"), [(STALE_LOCK, "3"), (NO_LOCK, "missing")])
def test_a_stale_or_missing_dvc_lock_fails(reproducibility: Reproducibility, found: str) -> None:
    rule = check_reproduction(reproducibility)

    assert not rule.passed and found in rule.value


def test_the_verdict_says_to_reproduce_and_commit_when_only_the_reproduction_fails() -> None:
    gate = [ACCURACY_PASSES, check_reproduction(STALE_LOCK)]

    verdict = judge(False, UNCHANGED_DATA, gate, STALE_LOCK)

    assert not verdict.passed
    assert "1 of 2 gate rule(s) failed" in verdict.reason
    assert "run `make repro`, then commit dvc.lock and results/" in verdict.reason


def test_metric_rules_that_fail_give_no_reproduction_instruction() -> None:
    gate = [RuleResult("accuracy", ">= 0.9", "0.5", passed=False), check_reproduction(AS_COMMITTED)]

    verdict = judge(False, UNCHANGED_DATA, gate, AS_COMMITTED)

    assert not verdict.passed and "make repro" not in verdict.reason


def test_without_configured_rules_the_reproduction_rule_alone_decides() -> None:
    assert judge(False, UNCHANGED_DATA, [check_reproduction(AS_COMMITTED)], AS_COMMITTED) == (
        Verdict(True, "no gate rules are configured in params.yaml")
    )
    assert not judge(False, UNCHANGED_DATA, [check_reproduction(NO_LOCK)], NO_LOCK).passed


def report_with(reproducibility: Reproducibility) -> Report:
    gate = [ACCURACY_PASSES, check_reproduction(reproducibility)]
    return Report(
        verdict=judge(False, UNCHANGED_DATA, gate, reproducibility),
        base_revision="main",
        base_sha="0" * 40,
        head_sha="1" * 40,
        run_url=None,
        notes=[],
        metrics=[],
        interval_note="",
        confidence=0.95,
        gate=gate,
        params=[],
        data=UNCHANGED_DATA,
        plots={},
        confusion={},
        reproducibility=reproducibility,
    )


def test_the_markdown_shows_the_failed_rule_the_differences_and_what_to_do() -> None:
    markdown = to_markdown(report_with(STALE_LOCK))

    assert "quality gate fails" in markdown.splitlines()[2]
    assert (
        "| reproduction | dvc.lock and metrics as reproduced | 3 difference(s) | ❌ |" in markdown
    )
    section = markdown.split("### Reproducibility")[1]
    assert "- accuracy: committed 0.9649 -> reproduced 0.9737" in section
    assert "run `make repro`, then commit dvc.lock and results/" in section


def test_the_markdown_of_a_reproduction_as_committed_gives_no_instruction() -> None:
    markdown = to_markdown(report_with(AS_COMMITTED))

    assert "quality gate passes" in markdown.splitlines()[2]
    assert "| reproduction | dvc.lock and metrics as reproduced | as committed | ✅ |" in markdown
    assert "make repro`, then" not in markdown
