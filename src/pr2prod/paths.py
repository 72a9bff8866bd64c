"""Where each step reads and writes, relative to the repository root (the working directory).

dvc.yaml names the same paths; keep the two in step.
"""

from pathlib import Path

PARAMS = Path("params.yaml")
SCHEMA = Path("schema.yaml")
DATA_DIR = Path("data")
DATA_DVC = Path("data.dvc")

# Git-tracked results (small, reviewed in pull requests).
RESULTS = Path("results")
VALIDATION_REPORT = RESULTS / "validation.json"
METRICS = RESULTS / "metrics.json"
PREDICTIONS = RESULTS / "predictions.csv"
PLOTS = RESULTS / "plots"  # the evaluate stage's plot data, one set per task
ROC_CURVE = PLOTS / "roc.csv"
PR_CURVE = PLOTS / "precision_recall.csv"
RESIDUALS = PLOTS / "residuals.csv"  # a numeric target's: actual, predicted, residual

# DVC-cached artifacts (large or binary; ignored by git).
ARTIFACTS = Path("artifacts")
TRAIN_SPLIT = ARTIFACTS / "split" / "train.csv"
TEST_SPLIT = ARTIFACTS / "split" / "test.csv"
MODEL = ARTIFACTS / "model" / "model.joblib"
MODEL_CARD = ARTIFACTS / "model" / "model.json"

DVC_LOCK = Path("dvc.lock")

# The pull-request report (ignored by git; uploaded as a CI artifact).
REPORT_DIR = Path("report")
REPORT_MD = REPORT_DIR / "report.md"
REPORT_JSON = REPORT_DIR / "report.json"
REPRO_RECORD = REPORT_DIR / "repro.json"
# The parameter sweep's table (`make sweep-report`) and the DVC queue's own output.
SWEEP_DIR = REPORT_DIR / "sweep"
SWEEP_MD = SWEEP_DIR / "sweep.md"
SWEEP_JSON = SWEEP_DIR / "sweep.json"
SWEEP_LOG = SWEEP_DIR / "queue.log"

# The drift monitor's report (`make monitor`; ignored by git).
MONITOR_DIR = Path("build") / "monitor"

# The image's build context (the exported bento and its Containerfile), from `make image`.
IMAGE_CONTEXT = Path("build") / "image"

# Deployments: the local target's processes, the rollout in progress, the history.
DEPLOY_STATE = Path(".deploy")
