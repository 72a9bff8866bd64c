"""`pr2prod smoke`: is a running service (process or container) the model we evaluated?

Waits for /readyz, then sends the golden rows (synthetic rows with the probabilities the
workspace's model gave them, recorded in its bundle by `make bento`: nothing is unpickled
here) and compares answers; a
request with no records must be refused with a 4xx, and /metrics must serve the request
counters a canary analysis reads.
"""

from __future__ import annotations

import httpx
import numpy as np

from pr2prod import paths
from pr2prod.readiness import NotReady, Watched, wait_until_ready
from pr2prod.release.bento import stored_golden_rows
from pr2prod.schema import load_schema
from pr2prod.serving.bundle import TOLERANCE


def smoke_test(url: str, timeout: float, watched: Watched | None = None) -> tuple[bool, str]:
    """(passed, what was found). With `watched`, waiting stops as soon as it exits."""
    schema = load_schema(paths.SCHEMA)
    golden = stored_golden_rows()
    try:
        waited = wait_until_ready(url, timeout, process=watched)
    except NotReady as error:
        if watched is not None:
            return False, f"smoke: {error}"
        return False, f"smoke: {url} was not ready within {timeout:g} s"
    response = httpx.post(f"{url}/predict", json={"records": golden["records"]}, timeout=30)
    if response.status_code != 200:
        return False, f"smoke: /predict answered {response.status_code}: {response.text[:500]}"
    served = np.array(
        [
            [answer["probabilities"][label] for label in schema.target.classes]
            for answer in response.json()
        ]
    )
    gap = float(np.abs(served - np.asarray(golden["probabilities"])).max())
    rows = len(golden["records"])
    if gap > TOLERANCE:
        return False, f"smoke: golden rows differ from the evaluation by up to {gap:.3g}"
    version = response.json()[0]["model_version"]
    refused = httpx.post(f"{url}/predict", json={"records": []}, timeout=30).status_code
    if not 400 <= refused < 500:
        return False, f"smoke: a request with no records got {refused}, not a 4xx"
    metrics = httpx.get(f"{url}/metrics", timeout=30)
    if metrics.status_code != 200 or "bentoml_service_request_total" not in metrics.text:
        return False, f"smoke: /metrics answered {metrics.status_code} without request counters"
    return True, (
        f"smoke: {url} ready after {waited:.1f} s; model {version} answered {rows} golden rows "
        f"as evaluated (largest gap {gap:.2g}); a request with no records got {refused}; "
        "/metrics serves"
    )
