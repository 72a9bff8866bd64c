"""`python -m bench.input_counting BUNDLE`: what counting inputs for drift costs a request.

The service counts every record's values in its reference's bins
(pr2prod.serving.telemetry.FeatureStatistics) before calling the model. This times that
call alone, for single-record and 32-record requests, and prints JSON. bench.serve runs
it in a process of its own with PROMETHEUS_MULTIPROC_DIR set, as BentoML runs its
workers: counters then write to memory-mapped files, the costlier path, which
prometheus_client picks when it is first imported.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import Counter

from pr2prod import paths
from pr2prod.data.records import split_records
from pr2prod.schema import load_schema
from pr2prod.serving.reference import REFERENCE_FILE, Reference
from pr2prod.serving.telemetry import FeatureStatistics

CALLS = 2000


def microseconds_per_request(
    statistics: FeatureStatistics, rows: list[dict], size: int
) -> dict[str, float]:
    requests = [[rows[(start * size + k) % len(rows)] for k in range(size)] for start in range(50)]
    for batch in requests:  # warm-up
        statistics.observe(batch)
    timings = []
    for call in range(CALLS):
        batch = requests[call % len(requests)]
        began = time.perf_counter()
        statistics.observe(batch)
        timings.append(time.perf_counter() - began)
    timings.sort()
    return {
        "records": size,
        "p50_us": timings[len(timings) // 2] * 1e6,
        "p99_us": timings[int(len(timings) * 0.99)] * 1e6,
    }


def main(argv: Sequence[str] | None = None) -> int:
    (bundle,) = argv if argv is not None else sys.argv[1:]
    reference = Reference.load(Path(bundle) / REFERENCE_FILE)
    counter = Counter("pr2prod_feature_values", "bench", ["feature", "bin", "model_version"])
    statistics = FeatureStatistics(reference, counter, "bench")
    rows = split_records(paths.TEST_SPLIT, load_schema(paths.SCHEMA))
    print(json.dumps([microseconds_per_request(statistics, rows, size) for size in (1, 32)]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
