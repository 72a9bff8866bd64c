"""No row of the data leaves the data files: not through GET /model, the bento and its image
context, the report, or any file a clone of the repository holds.

A row is found when its feature values appear one after the other in a file's numbers, as
they do in a CSV line, a JSON record or a printed list, or when a per-row hash of it (the
content hash row ids once were, or a digest of its CSV line) appears anywhere.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import httpx
import pandas as pd
import pytest
import yaml
from conftest import Server, run, start_server, stop_server

from pr2prod.data.validation import load_typed
from pr2prod.ports import free_port
from pr2prod.schema import FeatureSchema, load_schema

pytestmark = pytest.mark.integration

NUMBER = re.compile(r"(?<![\w.])-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
HEX = re.compile(r"[0-9a-f]{16,64}")


class RowScanner:
    """Finds the rows of one data file in other texts."""

    def __init__(self, data_file: Path, schema: FeatureSchema) -> None:
        frame = load_typed(data_file, schema)
        numeric = frame[schema.numeric_features]
        self.rows: dict[float, list[tuple[float, ...]]] = {}
        for values in numeric.itertuples(index=False):
            row = tuple(float(value) for value in values if pd.notna(value))
            self.rows.setdefault(row[0], []).append(row)
        lines = data_file.read_text().splitlines()[1:]
        content = pd.util.hash_pandas_object(frame[schema.columns], index=False)
        features = pd.util.hash_pandas_object(frame[schema.feature_names], index=False)
        self.hashes = {f"{value:016x}" for value in [*content, *features]}
        for line in lines:
            for digest in (hashlib.md5, hashlib.sha1, hashlib.sha256):
                self.hashes.add(digest(line.encode()).hexdigest())

    def found(self, text: str) -> list[str]:
        """What in `text` gives a row away (empty when nothing does)."""
        found = [f"hash {match}" for match in HEX.findall(text.lower()) if match in self.hashes]
        numbers = [float(token) for token in NUMBER.findall(text)]
        for start, number in enumerate(numbers):
            for row in self.rows.get(number, []):
                if tuple(numbers[start : start + len(row)]) == row:
                    found.append(f"row {', '.join(map(repr, row[:4]))}, ...")
        return found

    def found_in_files(self, root: Path, names: list[str]) -> dict[str, list[str]]:
        leaks = {}
        for name in names:
            content = (root / name).read_bytes()
            text = content.decode("latin-1") if b"\0" in content else content.decode()
            if found := self.found(text):
                leaks[name] = found[:3]
        return leaks


@pytest.fixture(scope="module")
def scanner(reproduced_project: Path) -> RowScanner:
    schema = load_schema(reproduced_project / "schema.yaml")
    return RowScanner(reproduced_project / "data" / "breast_cancer.csv", schema)


def files_under(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def test_the_scanner_finds_a_row_however_it_is_printed(
    reproduced_project: Path, scanner: RowScanner
) -> None:
    """The scan must be able to fail: a row as a CSV line, a JSON record, a hash."""
    data = reproduced_project / "data" / "breast_cancer.csv"
    schema = load_schema(reproduced_project / "schema.yaml")
    line = data.read_text().splitlines()[7]
    record = load_typed(data, schema)[schema.feature_names].iloc[6].to_dict()

    assert scanner.found(f"x\n{line}\n")
    assert scanner.found(json.dumps({"records": [record]}, indent=2))
    assert scanner.found(f"{hashlib.sha256(line.encode()).hexdigest()}")
    typed = load_typed(data, schema)[schema.columns]
    content = pd.util.hash_pandas_object(typed, index=False)
    assert scanner.found(f"row_id\n{content.iloc[3]:016x}\n")
    assert not scanner.found(json.dumps({"records": [record | {"mean_radius": 1e9}]}))


def test_get_model_holds_no_row(served_bento: Server, scanner: RowScanner) -> None:
    answer = httpx.get(f"{served_bento.url}/model", timeout=30)

    assert answer.status_code == 200 and answer.json()["golden"]["records"]
    assert scanner.found(answer.text) == []


def test_the_bento_and_its_image_context_hold_no_row(
    reproduced_project: Path, bento_tag: str, scanner: RowScanner
) -> None:
    run("pr2prod", "image", "--context-only", cwd=reproduced_project)
    context = reproduced_project / "build" / "image"
    names = files_under(context)

    assert any(name.endswith("golden.json") for name in names)  # the model came with it
    assert scanner.found_in_files(context, names) == {}


def test_the_report_holds_no_row(project: Path, scanner: RowScanner) -> None:
    run("pr2prod", "report", cwd=project)
    report = project / "report"

    assert scanner.found_in_files(report, files_under(report)) == {}


def test_no_committed_file_holds_a_row(reproduced_project: Path, scanner: RowScanner) -> None:
    """Every file of a clone, with the pipeline's results reproduced (data/ is DVC's)."""
    listed = run("git", "ls-files", "-z", cwd=reproduced_project).stdout.split("\0")
    names = [name for name in listed if name and (reproduced_project / name).is_file()]

    assert "results/predictions.csv" in names and not any(n.startswith("data/") for n in names)
    assert scanner.found_in_files(reproduced_project, names) == {}


def test_the_service_logs_no_value_a_warn_policy_lets_through(
    project: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request's values are somebody's data: the warning names the field, not the value."""
    # Its own model store: the policy is stored with the model, whose tag hashes the model
    # file alone, so the session's store would serve the reject policy it already holds.
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "bentoml"))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["serving"]["out_of_range"] = "warn"
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    tag = run("pr2prod", "bento", cwd=project).stdout.split("bento ")[-1].split()[0]
    port, log = free_port(), tmp_path / "server.log"
    command = ["bentoml", "serve", tag, "--host", "127.0.0.1", "--port", str(port)]
    process, url = start_server(command, project, log, port)
    try:
        (record, *_) = json.loads((project / "docs/examples/request.json").read_text())["records"]
        sent = {**record, "mean_radius": 4242.4242}  # the schema allows at most 50
        answer = httpx.post(f"{url}/predict", json={"records": [sent]}, timeout=30)
    finally:
        stop_server(process)

    assert answer.status_code == 200  # accepted, with a warning
    assert "mean_radius: outside [0.0, 50.0]" in log.read_text()
    assert "4242" not in log.read_text()
