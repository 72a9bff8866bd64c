"""`pr2prod repro`: `dvc repro`, recording which stages ran and how long it took.

The record (report/repro.json) lets the report say what CI actually re-computed.
With a default DVC remote, `--pull` fetches what the remote (or its run-cache) already
has instead of recomputing it. Not `--allow-missing`: that skips unchanged stages without
checking their outputs out, and the bento needs model.joblib on disk.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

from pr2prod.dvc_tools import default_remote

_STAGE_STARTED = re.compile(r"^Running stage '([^']+)'")


def reproduce(record_path: Path) -> int:
    command = [sys.executable, "-m", "dvc", "repro"]
    if default_remote():
        command += ["--pull"]
    started = time.monotonic()
    stages: list[str] = []
    # Stream DVC's output as it comes (training can take a while) while noting the stages.
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            print(line, end="", flush=True)
            if match := _STAGE_STARTED.match(line):
                stages.append(match.group(1))
    record = {
        "command": "dvc " + " ".join(command[3:]),
        "stages_run": stages,
        "seconds": round(time.monotonic() - started, 1),
        "exit_status": process.returncode,
    }
    record_path.parent.mkdir(parents=True, exist_ok=True)
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    return process.returncode
