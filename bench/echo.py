"""A minimal BentoML service that answers each record with itself (`make bench-serve`).

No model, no schema, no guards: the framework's own cost of an HTTP request on this
machine, the ceiling the model service is measured against. One worker, like the model
service's default.
"""

from __future__ import annotations

from typing import Any

import bentoml


@bentoml.service(name="echo", workers=1, traffic={"timeout": 30})
class Echo:
    @bentoml.api
    def predict(self, records: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return records
