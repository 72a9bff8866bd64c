"""Loading the pipeline's model file only when it is the file dvc.lock records.

Unpickling runs code, so a model file is loaded only once its bytes are known to be the
ones the committed pipeline produced: `dvc repro --pull` and `dvc pull` fetch outputs from
a remote that anyone with write access to it could have altered. dvc.lock (in git, so
reviewed) records each output's MD5; a file that differs is refused before joblib sees it.
A model dvc.lock does not record (a scratch workspace, a test's own model) is one its
user placed there, and is loaded as it is.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import joblib
import yaml

from pr2prod import paths
from pr2prod.errors import Pr2prodError

CHUNK = 1 << 20


def load_pipeline_model(model_file: Path, lock_file: Path = paths.DVC_LOCK) -> Any:
    """joblib.load(model_file), after checking its MD5 against dvc.lock's record of it."""
    recorded = recorded_md5(model_file, lock_file)
    if recorded is not None:
        actual = file_md5(model_file)
        if actual != recorded:
            raise Pr2prodError(
                f"{model_file} is not the model {lock_file} records (MD5 {actual}, "
                f"recorded {recorded}); it was not loaded",
                hint="reproduce it with `make repro`, or restore it with `dvc checkout`; if it "
                "came from the DVC remote, that remote's copy is corrupt or was altered",
            )
    return joblib.load(model_file)


def recorded_md5(output: Path, lock_file: Path = paths.DVC_LOCK) -> str | None:
    """The MD5 dvc.lock records for the stage output `output`; None when it records none."""
    if not lock_file.is_file():
        return None
    wanted = _relative(output, lock_file.parent)
    stages = (yaml.safe_load(lock_file.read_text()) or {}).get("stages") or {}
    for stage in stages.values():
        for out in stage.get("outs") or []:
            if out.get("path") == wanted and out.get("md5"):
                return str(out["md5"])
    return None


def file_md5(file: Path) -> str:
    """The MD5 DVC records for a file (`hash: md5`: of its bytes, as they are)."""
    digest = hashlib.md5(usedforsecurity=False)
    with file.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _relative(output: Path, root: Path) -> str:
    try:
        return output.resolve().relative_to(root.resolve()).as_posix()
    except ValueError:
        return output.as_posix()  # outside the repository: never a recorded output
