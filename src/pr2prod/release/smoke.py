"""`pr2prod smoke`: is a running service (process or container) the model we evaluated?

Waits for /readyz, then sends the golden rows (synthetic rows with the probabilities, or
values, the workspace's model gave them, recorded in its bundle by `make bento`: nothing is
unpickled here) and compares answers; a
request with no records must be refused with a 4xx, and /metrics must serve the request
counters a canary analysis reads.
"""

from __future__ import annotations

import httpx

from pr2prod.readiness import NotReady, Watched, wait_until_ready
from pr2prod.release.bento import stored_bundle
from pr2prod.serving.bundle import served_answers_match


def smoke_test(url: str, timeout: float, watched: Watched | None = None) -> tuple[bool, str]:
    """(passed, what was found). With `watched`, waiting stops as soon as it exits."""
    bundle = stored_bundle()
    golden = bundle.golden
    try:
        waited = wait_until_ready(url, timeout, process=watched)
    except NotReady as error:
        if watched is not None:
            return False, f"smoke: {error}"
        return False, f"smoke: {url} was not ready within {timeout:g} s"
    response = httpx.post(f"{url}/predict", json={"records": golden["records"]}, timeout=30)
    if response.status_code != 200:
        return False, f"smoke: /predict answered {response.status_code}: {response.text[:500]}"
    classes = list(bundle.schema.target.classes)
    matches, gap = served_answers_match(golden, response.json(), classes, bundle.policy)
    rows = len(golden["records"])
    if not matches:
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
