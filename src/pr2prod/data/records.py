"""Table rows as the service receives them: JSON-ready request records.

Golden rows, synthetic load, benchmarks and tests all send test rows to the service; they
all turn them into records here, so a missing value travels the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pr2prod.schema import FeatureSchema


def request_records(frame: pd.DataFrame, schema: FeatureSchema) -> list[dict[str, Any]]:
    """One record per row, the schema's features only (the target column is left out)."""
    return [
        {name: json_value(value) for name, value in row.items()}
        for row in frame[schema.feature_names].to_dict(orient="records")
    ]


def split_records(path: Path, schema: FeatureSchema) -> list[dict[str, Any]]:
    """A split file (validated by the pipeline) as request records, read in its types."""
    # Imported here: pandera is slow to import, and callers that only turn rows into records
    # (synthetic load, benchmarks) never read a split file.
    from pr2prod.data.validation import load_typed

    return request_records(load_typed(path, schema), schema)


def json_value(value: Any) -> Any:
    """A cell as JSON can carry it: missing -> None (JSON has no NaN, and the service
    rejects it), numpy scalars -> the Python values they hold."""
    if pd.isna(value):
        return None
    return value.item() if isinstance(value, np.generic) else value
