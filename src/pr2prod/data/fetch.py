"""`pr2prod data`: put the exact data recorded in data.dvc into data/.

With a DVC remote configured, the data is pulled from it and a failure is an error.
Without one (a fresh fork), the embedded sample is written and must match the hash
in data.dvc; it is never used as a silent stand-in for data that cannot be pulled.
"""

from __future__ import annotations

import shutil

from pr2prod import paths
from pr2prod.data.sample import write_sample
from pr2prod.dvc_tools import default_remote, matches_dvc_file, run_dvc
from pr2prod.errors import Pr2prodError


def fetch_data() -> str:
    """Make data/ match data.dvc; return a one-line account of what was done."""
    if not paths.DATA_DVC.is_file():
        raise Pr2prodError(
            f"{paths.DATA_DVC} not found", hint="run from the repository root, or `dvc add data`"
        )
    remote = default_remote()
    if remote:
        return _pull(remote)
    if _matches_data_dvc():
        return f"data: {paths.DATA_DIR}/ already matches {paths.DATA_DVC}"
    return _write_sample()


def _pull(remote: str) -> str:
    result = run_dvc("pull", str(paths.DATA_DVC), check=False)
    if result.returncode != 0:
        output = (result.stderr or result.stdout).strip()
        raise Pr2prodError(
            f"`dvc pull` from the remote '{remote}' failed:\n{output}",
            hint=(
                "check the remote's URL and credentials (`dvc remote list`, "
                "docs/dvc-remotes.md); if the remote is new and empty, "
                "push the data to it first with `dvc push`"
            ),
        )
    if not _matches_data_dvc():
        raise Pr2prodError(
            f"after `dvc pull`, {paths.DATA_DIR}/ still differs from {paths.DATA_DVC}"
        )
    return f"data: pulled {paths.DATA_DIR}/ from the DVC remote '{remote}'"


def _matches_data_dvc() -> bool:
    return matches_dvc_file(paths.DATA_DVC)


def _write_sample() -> str:
    if paths.DATA_DIR.exists() and any(paths.DATA_DIR.iterdir()):
        raise Pr2prodError(
            f"{paths.DATA_DIR}/ differs from what {paths.DATA_DVC} records",
            hint=(
                "if you replaced the data on purpose, record it with `dvc add data` and commit "
                "data.dvc; otherwise restore it with `dvc checkout data.dvc`"
            ),
        )
    written = write_sample()
    if not _matches_data_dvc():
        shutil.rmtree(paths.DATA_DIR)
        raise Pr2prodError(
            f"{paths.DATA_DVC} records data that is not the embedded sample, "
            "and no DVC remote is configured to pull it from",
            hint="configure the remote that holds your data (docs/dvc-remotes.md), "
            "then `make data`",
        )
    # Store it in the DVC cache too, so `dvc push` and `dvc checkout` work afterwards.
    run_dvc("commit", "--force", str(paths.DATA_DVC))
    return f"data: wrote the embedded sample to {written}; it matches {paths.DATA_DVC}"
