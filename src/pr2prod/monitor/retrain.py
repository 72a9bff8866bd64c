"""`make retrain-pr`: newly labelled rows become a pull request that retrains the model.

The rows (a CSV with the schema's columns, e.g. recent traffic labelled after a drift
alert) are appended to the data file, the whole file is validated, `dvc add` records the
new data in data.dvc and `dvc push` puts it on the DVC remote, where the pull request's
checks will pull it from. Then data.dvc alone becomes a commit on a branch and a pull
request, which runs the normal report and gate against the current model.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

from pr2prod import paths
from pr2prod.data.validation import validate_file
from pr2prod.dvc_tools import default_remote, run_dvc
from pr2prod.errors import Pr2prodError
from pr2prod.github.api import GitHub
from pr2prod.github.proposal import propose_files
from pr2prod.schema import FeatureSchema

BRANCH = "pr2prod/retrain"


@dataclass(frozen=True)
class Retraining:
    rows: int  # labelled rows added
    url: str  # the pull request
    opened: bool  # False: the open one was updated


def append_labelled_rows(labelled: Path, data_file: Path, schema: FeatureSchema) -> int:
    """Append `labelled`'s rows to `data_file` (cells as written); undone if validation fails."""
    if not labelled.is_file():
        raise Pr2prodError(f"{labelled} not found", hint="name a CSV of newly labelled rows")
    original = data_file.read_text()
    header = next(csv.reader(io.StringIO(original)))
    with labelled.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    columns = set(rows[0]) if rows else set()
    if not rows or columns != set(schema.columns):
        raise Pr2prodError(
            f"{labelled} must hold rows with exactly the columns {schema.columns}",
            hint="one row per labelled record, the features and the target, with a header",
        )
    added = io.StringIO()
    writer = csv.DictWriter(added, fieldnames=header, lineterminator="\n")
    writer.writerows(rows)
    data_file.write_text(original + ("" if original.endswith("\n") else "\n") + added.getvalue())
    report = validate_file(data_file, schema)
    if not report.valid:
        data_file.write_text(original)
        raise Pr2prodError(
            f"with the rows of {labelled}, {data_file} fails validation; nothing was changed",
            hint=f"fix {labelled}; `pr2prod validate` on a copy with the rows added says why",
        )
    return len(rows)


def propose_retraining(
    github: GitHub, labelled: Path, data_file: Path, schema: FeatureSchema, base: str = "main"
) -> Retraining:
    remote = default_remote()
    if remote is None:
        raise Pr2prodError(
            "no default DVC remote: the pull request's checks could not pull the new data",
            hint="configure one first (docs/dvc-remotes.md), then run this again",
        )
    rows = append_labelled_rows(labelled, data_file, schema)
    run_dvc("add", str(paths.DATA_DIR))
    run_dvc("push", "--remote", remote, str(paths.DATA_DVC))
    body = (
        f"Adds {rows} newly labelled rows from `{labelled.name}` to `{data_file}` (pushed to "
        f"the DVC remote `{remote}`). The checks reproduce the pipeline on the new data and "
        "compare the retrained model with the current one: merge when the gate passes."
    )
    url, opened = propose_files(
        github,
        [paths.DATA_DVC],
        base=base,
        branch=BRANCH,
        title=f"Retrain with {rows} newly labelled rows",
        body=body,
    )
    return Retraining(rows, url, opened)
