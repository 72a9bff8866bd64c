"""`python -m bench.drift`: how fast drift is caught, and how often clean traffic alarms.

Synthetic traffic is drawn with replacement from the sample data's rows and changed in a
controlled way from its first request: one numeric feature moved by 0.2 or 0.5 of its
training standard deviation, one feature missing in 10% of records, a category the schema
does not list in 5% of records (the mixed fixture, as the sample data has no categorical
feature), or nothing at all. Every feature is monitored at once.

Two detectors watch the same streams:

- ours, used as a sequential monitor: every CHECK_EVERY records, the monitor's tests
  (pr2prod.monitor.drift: G-test and Fisher per feature, Holm over the features) on the
  last WINDOW records counted in the reference's bins, at family-wise level ALPHA;
- an Evidently-style baseline: fixed windows of BASELINE_WINDOW records, a feature drifts
  when its normed Wasserstein distance (to the training values, over their standard
  deviation) is at least 0.1, or for a categorical feature when the Jensen-Shannon
  distance of the category shares is; missing values are dropped first, as Evidently does.

Which rows: by default the training split's, the population the reference summarises, so
unshifted traffic is what the model learnt from. `--population test` resamples the test
split instead, as a stand-in for new traffic: but its 114 rows are a population of their
own, which differs from the training rows by more than new, independent traffic would, and
a window of 500 draws from them repeats each row four times; both detectors then alarm on
"unshifted" traffic, correctly, since it does not come from the reference's population.

The model's answers get rows of their own (bench.drift_answers): the shifted-probabilities
model of the canary benchmark served as if stable (prediction drift), and labels that come
back changed for part of one class, the inputs unchanged (concept drift; delays and rates
count labelled predictions), each beside the genuine model on clean traffic.

Delay is the records from the shift to the first alarm (an undetected run counts as
never). False alarms are alarms per 10,000 clean records, the detector restarting after
each. Prints a table; writes nothing.
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.spatial.distance import jensenshannon
from scipy.stats import wasserstein_distance

from bench.drift_answers import (
    ACCURACY_DROP,
    Answers,
    accuracy_baseline_alarms,
    first,
    labelled_stream,
    performance_alarms,
    prediction_alarms,
    prediction_baseline_alarms,
    relabelling,
    sequential_alarms,
)
from pr2prod import paths
from pr2prod.data.validation import load_typed
from pr2prod.monitor.drift import DRIFT, feature_finding, with_verdicts
from pr2prod.release.reference import feature_reference
from pr2prod.schema import FeatureSchema, load_schema
from pr2prod.serving.reference import MISSING, UNSEEN, FeatureReference, NumericReference

CHECK_EVERY = 50
WINDOW = 500
# Per check: 200 checks per 10,000 records, so by the union bound clean traffic raises at most
# 0.8 alarms per 10,000 records on average, whatever the correlation between checks.
ALPHA = 0.8 * CHECK_EVERY / 10_000
MIN_ROWS = 100
BASELINE_WINDOW = 500
BASELINE_THRESHOLD = 0.1
HORIZON = 2000  # records watched after a shift before calling it missed
CLEAN_RECORDS = 20_000
MIXED = Path("tests/fixtures/mixed")
NEW_CATEGORY = "__new_in_production__"


@dataclass(frozen=True)
class Dataset:
    name: str
    schema: FeatureSchema
    train: pd.DataFrame
    traffic: pd.DataFrame  # the rows traffic is drawn from
    reference: dict[str, FeatureReference]  # per feature, as the model's reference holds it

    @property
    def first_numeric(self) -> str:
        return self.schema.numeric_features[0]

    @property
    def first_categorical(self) -> str:
        return next(f.name for f in self.schema.features if not f.is_numeric)


def dataset(
    name: str, schema: FeatureSchema, train: pd.DataFrame, test: pd.DataFrame, population: str
) -> Dataset:
    features = {f.name: feature_reference(train[f.name], f) for f in schema.features}
    return Dataset(name, schema, train, test if population == "test" else train, features)


def sample_data(population: str) -> Dataset:
    schema = load_schema(paths.SCHEMA)
    train, test = load_typed(paths.TRAIN_SPLIT, schema), load_typed(paths.TEST_SPLIT, schema)
    return dataset("sample", schema, train, test, population)


def mixed_data(seed: int, population: str) -> Dataset:
    schema = load_schema(MIXED / "schema.yaml")
    rows = load_typed(MIXED / "loans.csv", schema)
    in_test = np.random.default_rng(seed).random(len(rows)) < 0.2
    return dataset("mixed", schema, rows[~in_test], rows[in_test], population)


Shift = Callable[[pd.DataFrame, np.random.Generator], pd.DataFrame]


def mean_shift(data: Dataset, feature: str, sds: float) -> Shift:
    step = sds * float(data.train[feature].std())

    def shifted(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        frame[feature] = frame[feature] + step
        return frame

    return shifted


def replaced_in_share(feature: str, share: float, value: object) -> Shift:
    def replaced(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
        hit = rng.random(len(frame)) < share
        column = frame[feature].astype(object)
        column[hit] = value
        frame[feature] = column
        return frame

    return replaced


def unchanged(frame: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    return frame


def traffic(data: Dataset, shift: Shift, records: int, rng: np.random.Generator) -> pd.DataFrame:
    rows = rng.integers(0, len(data.traffic), size=records)
    frame = data.traffic.iloc[rows].reset_index(drop=True)
    frame = frame[[f.name for f in data.schema.features]].astype(object)
    return shift(frame, rng)


def bin_labels(data: Dataset, frame: pd.DataFrame) -> dict[str, np.ndarray]:
    """Each record's bin per feature, as the service counts it."""
    labels = {}
    for name, feature in data.reference.items():
        values = frame[name]
        missing = values.isna().to_numpy()
        if isinstance(feature, NumericReference):
            numbers = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            bins = np.searchsorted(feature.edges, numbers, side="left").astype(str)
        else:
            known = values.astype(str).isin(list(feature.counts)).to_numpy()
            bins = np.where(known, values.astype(str).to_numpy(), UNSEEN)
        labels[name] = np.where(missing, MISSING, bins).astype(object)
    return labels


def ours_alarms(
    data: Dataset, labels: dict[str, np.ndarray], records: int, first_only: bool = False
) -> list[int]:
    """The records at which our sequential monitor alarms (restarting after each alarm)."""

    def drifted(since: int, end: int) -> bool:
        findings = []
        for name, feature in data.reference.items():
            found, counts = np.unique(labels[name][since:end], return_counts=True)
            live = dict(zip(found.tolist(), counts.astype(float).tolist(), strict=True))
            findings.append(feature_finding(name, feature, live, MIN_ROWS))
        return any(f.verdict == DRIFT for f in with_verdicts(findings, ALPHA))

    return sequential_alarms(records, CHECK_EVERY, WINDOW, MIN_ROWS, drifted, first_only)


def baseline_alarms(data: Dataset, frame: pd.DataFrame) -> list[int]:
    """The records at which the Evidently-style baseline alarms (end of each drifted window)."""
    alarms = []
    for end in range(BASELINE_WINDOW, len(frame) + 1, BASELINE_WINDOW):
        window = frame.iloc[end - BASELINE_WINDOW : end]
        if any(baseline_score(data, name, window[name]) >= BASELINE_THRESHOLD for name in window):
            alarms.append(end)
    return alarms


def baseline_score(data: Dataset, name: str, live: pd.Series) -> float:
    reference = data.train[name].dropna()
    live = live.dropna()
    if len(live) == 0:
        return 0.0
    if isinstance(data.reference[name], NumericReference):
        spread = float(reference.std()) or 1.0
        return wasserstein_distance(reference.astype(float), live.astype(float)) / spread
    categories = sorted(set(reference.astype(str)) | set(live.astype(str)))
    ref_shares = reference.astype(str).value_counts().reindex(categories, fill_value=0)
    live_shares = live.astype(str).value_counts().reindex(categories, fill_value=0)
    return float(jensenshannon(ref_shares.to_numpy(), live_shares.to_numpy(), base=2))


@dataclass(frozen=True)
class Row:
    scenario: str
    detector: str
    delays: list[float]  # records to the first alarm, inf when missed
    false_alarms: float | None = None  # per 10,000 clean records

    def cells(self) -> list[str]:
        if self.false_alarms is not None:
            return [self.scenario, self.detector, "", "", "", f"{self.false_alarms:.2f}"]
        delays = np.asarray(self.delays)
        caught = np.isfinite(delays).mean()
        return [
            self.scenario,
            self.detector,
            _records(float(np.quantile(delays, 0.5, method="inverted_cdf"))),
            _records(float(np.quantile(delays, 0.9, method="inverted_cdf"))),
            f"{caught:.0%}",
            "",
        ]


def _records(value: float) -> str:
    return "never" if math.isinf(value) else f"{value:.0f}"


def delays(data: Dataset, shift: Shift, runs: int, seed: int) -> tuple[list[float], list[float]]:
    ours, baseline = [], []
    for run in range(runs):
        rng = np.random.default_rng([seed, run])
        frame = traffic(data, shift, HORIZON, rng)
        first = ours_alarms(data, bin_labels(data, frame), HORIZON, first_only=True)
        ours.append(float(first[0]) if first else math.inf)
        first = baseline_alarms(data, frame)
        baseline.append(float(first[0]) if first else math.inf)
    return ours, baseline


def false_alarms(data: Dataset, records: int, seed: int) -> tuple[float, float]:
    frame = traffic(data, unchanged, records, np.random.default_rng([seed, 999]))
    ours = len(ours_alarms(data, bin_labels(data, frame), records))
    baseline = len(baseline_alarms(data, frame))
    return ours * 10_000 / records, baseline * 10_000 / records


def run(runs: int, seed: int, population: str) -> list[Row]:
    sample, mixed = sample_data(population), mixed_data(seed, population)
    feature = sample.first_numeric
    scenarios = [
        (f"{feature} +0.2 sd", sample, mean_shift(sample, feature, 0.2)),
        (f"{feature} +0.5 sd", sample, mean_shift(sample, feature, 0.5)),
        (f"{feature} missing in 10%", sample, replaced_in_share(feature, 0.1, None)),
        (
            f"new {mixed.first_categorical} in 5% (mixed)",
            mixed,
            replaced_in_share(mixed.first_categorical, 0.05, NEW_CATEGORY),
        ),
    ]
    rows = []
    for name, data, shift in scenarios:
        ours, baseline = delays(data, shift, runs, seed)
        rows += [Row(name, "ours", ours), Row(name, "Evidently-style", baseline)]
    for data in (sample, mixed):
        ours_rate, baseline_rate = false_alarms(data, CLEAN_RECORDS, seed)
        name = f"unshifted ({data.name})"
        rows += [
            Row(name, "ours", [], ours_rate),
            Row(name, "Evidently-style", [], baseline_rate),
        ]
    answers = Answers.load()
    return rows + prediction_rows(answers, runs, seed) + concept_rows(answers, runs, seed)


def prediction_rows(answers: Answers, runs: int, seed: int) -> list[Row]:
    """The shifted-probabilities model served as if stable; the genuine one on clean traffic."""
    ours, baseline = [], []
    for run in range(runs):
        rng = np.random.default_rng([seed, 100 + run])
        served = answers.shifted[rng.integers(0, len(answers.shifted), HORIZON)]
        found = prediction_alarms(answers, served, CHECK_EVERY, WINDOW, ALPHA, MIN_ROWS, True)
        ours.append(first(found))
        found = prediction_baseline_alarms(answers, served, BASELINE_WINDOW, BASELINE_THRESHOLD)
        baseline.append(first(found))
    rng = np.random.default_rng([seed, 998])
    clean = answers.genuine[rng.integers(0, len(answers.genuine), CLEAN_RECORDS)]
    ours_rate = len(prediction_alarms(answers, clean, CHECK_EVERY, WINDOW, ALPHA, MIN_ROWS))
    baseline_rate = len(
        prediction_baseline_alarms(answers, clean, BASELINE_WINDOW, BASELINE_THRESHOLD)
    )
    shifted, unshifted = "shifted-probabilities model", "genuine model (test rows)"
    per = 10_000 / CLEAN_RECORDS
    return [
        Row(shifted, "ours", ours),
        Row(shifted, "Evidently-style", baseline),
        Row(unshifted, "ours", [], ours_rate * per),
        Row(unshifted, "Evidently-style", [], baseline_rate * per),
    ]


def concept_rows(answers: Answers, runs: int, seed: int) -> list[Row]:
    """Labels of one class changed (accuracy down ACCURACY_DROP), and correct labels; the
    delays and rates count labelled predictions."""
    chosen, share = relabelling(answers)
    ours, baseline = [], []
    for run in range(runs):
        rng = np.random.default_rng([seed, 200 + run])
        predicted, actual = labelled_stream(answers, HORIZON, rng, share)
        ours.append(first(performance_alarms(answers, predicted, actual, CHECK_EVERY, ALPHA, True)))
        baseline.append(first(accuracy_baseline_alarms(answers, predicted, actual, WINDOW)))
    rng = np.random.default_rng([seed, 997])
    predicted, actual = labelled_stream(answers, CLEAN_RECORDS, rng, 0.0)
    ours_rate = len(performance_alarms(answers, predicted, actual, CHECK_EVERY, ALPHA))
    baseline_rate = len(accuracy_baseline_alarms(answers, predicted, actual, WINDOW))
    changed = (
        f"accuracy -{ACCURACY_DROP * 100:.0f} points ({share:.0%} of "
        f"{answers.classes[chosen]} labels changed)"
    )
    correct, per = "correct labels", 10_000 / CLEAN_RECORDS
    return [
        Row(changed, "ours", ours),
        Row(changed, "fixed-window accuracy", baseline),
        Row(correct, "ours", [], ours_rate * per),
        Row(correct, "fixed-window accuracy", [], baseline_rate * per),
    ]


def table(rows: list[Row]) -> str:
    header = ["traffic", "detector", "median delay", "p90 delay", "caught", "false alarms/10k"]
    lines = [header, ["---"] * len(header), *(row.cells() for row in rows)]
    return "\n".join("| " + " | ".join(cells) + " |" for cells in lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=30, help="streams per shifted scenario")
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument(
        "--population",
        choices=("train", "test"),
        default="train",
        help="the rows traffic is resampled from (see the module's docstring)",
    )
    args = parser.parse_args()
    started = time.monotonic()
    rows = run(args.runs, args.seed, args.population)
    print(table(rows))
    print(
        f"\nours: every {CHECK_EVERY} records, the last {WINDOW}, alpha {ALPHA} per check, "
        f"at least {MIN_ROWS} records; baseline: windows of {BASELINE_WINDOW}, score >= "
        f"{BASELINE_THRESHOLD}; shifted streams watched for {HORIZON} records, {args.runs} "
        f"each; traffic from the {args.population} rows. Answers: the test rows resampled; "
        "live performance judged on every label since the stream began, every "
        f"{CHECK_EVERY} labels, at least monitor.min_rows; fixed-window accuracy: windows of "
        f"{WINDOW} labels. {time.monotonic() - started:.0f} s"
    )


if __name__ == "__main__":
    main()
