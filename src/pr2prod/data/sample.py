"""The embedded sample dataset: Breast Cancer Wisconsin (Diagnostic), shipped with scikit-learn.

W. Wolberg, O. Mangasarian, N. Street, W. Street (1995), UCI Machine Learning Repository,
CC BY 4.0. 569 tumours, 30 numeric features computed from images of cell nuclei,
diagnosis malignant or benign. It comes with scikit-learn, so a fresh clone has the
data without any download; `make data` writes it and checks it against data.dvc.
"""

from __future__ import annotations

from pathlib import Path

from sklearn.datasets import load_breast_cancer

SAMPLE_FILE = Path("data") / "breast_cancer.csv"
TARGET = "diagnosis"


def write_sample(path: Path = SAMPLE_FILE) -> Path:
    """Write the sample as a CSV with snake_case column names and text labels."""
    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=lambda name: name.replace(" ", "_"))
    frame[TARGET] = frame.pop("target").map(dict(enumerate(bunch.target_names)))
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False, lineterminator="\n")
    return path
