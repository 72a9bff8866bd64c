"""The DVC pipeline's stages, one subcommand each: validate, prepare, train, evaluate.

dvc.yaml runs these. Every stage depends on this module and on what its own handler imports,
so nothing else belongs here: an edit to this file re-runs the whole pipeline
(tests/unit/test_stage_dependencies.py holds dvc.yaml to exactly that code).
"""

from __future__ import annotations

import argparse
import sys

from pr2prod import paths
from pr2prod.commands import command


@command("validate", "check the data against schema.yaml; fail on any broken rule")
def validate(_: argparse.Namespace) -> int:
    from pr2prod.console import describe_validation
    from pr2prod.data.validation import validate_file
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    settings, schema = load_settings(), load_schema(paths.SCHEMA)
    report = validate_file(settings.data.file, schema)
    if not settings.privacy.raw_values:
        report = report.without_values()  # the report, the PR comment and this output
    paths.VALIDATION_REPORT.parent.mkdir(parents=True, exist_ok=True)
    paths.VALIDATION_REPORT.write_text(report.to_json())
    print(describe_validation(report), file=sys.stdout if report.valid else sys.stderr)
    return 0 if report.valid else 1


@command("prepare", "split the data into seeded, stratified train and test sets")
def prepare(_: argparse.Namespace) -> int:
    from pr2prod.model.split import split_dataset
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    settings, schema = load_settings(), load_schema(paths.SCHEMA)
    train_rows, test_rows = split_dataset(settings, schema, paths.TRAIN_SPLIT, paths.TEST_SPLIT)
    print(f"prepare: {train_rows} training rows, {test_rows} test rows (seed {settings.seed})")
    return 0


@command("train", "fit the scikit-learn pipeline described by params.yaml")
def train(_: argparse.Namespace) -> int:
    from pr2prod.model.train import train_model
    from pr2prod.schema import load_schema
    from pr2prod.settings import load_settings

    settings, schema = load_settings(), load_schema(paths.SCHEMA)
    print(f"train: fitting {settings.train.estimator} ...", flush=True)
    rows = train_model(settings, schema, paths.TRAIN_SPLIT, paths.MODEL, paths.MODEL_CARD)
    print(f"train: fitted on {rows} rows, saved {paths.MODEL}")
    return 0


@command("evaluate", "write test metrics, per-row predictions and plot data")
def evaluate(_: argparse.Namespace) -> int:
    from pr2prod.model.evaluate import evaluate_model, write_evaluation
    from pr2prod.schema import load_schema

    schema = load_schema(paths.SCHEMA)
    evaluation = evaluate_model(paths.MODEL, paths.TEST_SPLIT, schema)
    write_evaluation(evaluation, paths.METRICS, paths.PREDICTIONS, paths.PLOTS)
    figures = evaluation.metrics
    if schema.target.is_numeric:
        summary = f"RMSE {figures['rmse']:.4g}, MAE {figures['mae']:.4g}, R2 {figures['r2']:.4f}"
    else:
        summary = (
            f"accuracy {figures['accuracy']:.4f}, F1 {figures['f1']:.4f}, "
            f"ROC-AUC {figures['roc_auc']:.4f}"
        )
    print(f"evaluate: {summary} on {figures['test_rows']} test rows")
    return 0
