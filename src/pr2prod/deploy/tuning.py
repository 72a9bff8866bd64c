"""Which setting decided a rollback, and where to change it.

A rolled-back rehearsal of a healthy model is a threshold that does not fit the data or
the machine: the summary names the params.yaml key that decided, so the fix is one edit.
The reasons are the analysis's and the controller's own sentences; each kind starts in
a way that says which rule wrote it.
"""

from __future__ import annotations

# (how a reason starts or what it holds, the setting that decided it). First match wins:
# the more specific sentences come before the more general ones.
DECIDING_SETTINGS: tuple[tuple[str, str], ...] = (
    ("canary 5xx rate", "canary.thresholds.error_rate_max / error_rate_margin"),
    ("canary p99 latency", "canary.thresholds.latency_p99_max_ms / latency_p99_ratio"),
    ("canary p50 latency", "canary.thresholds.latency_p50_ratio"),
    ("canary model p50 latency", "canary.thresholds.model_time_ratio"),
    ("before any traffic, on the same", "canary.thresholds.prediction_divergence_max"),
    ("held-out rows before traffic", "canary.window_seconds / canary.min_requests"),
    ("predicted-", "canary.thresholds.prediction_divergence_max"),
    ("inconclusive windows in a row", "canary.max_inconclusive / canary.min_requests"),
    ("was not ready within", "canary.readiness_timeout_seconds"),
    ("no decision within", "canary.progress_deadline_seconds"),
)

# What the calibrated limit's settings do, since the limit itself is simulated, not set.
CALIBRATED = (
    "the divergence limit was simulated from both versions' answers to the held-out rows; "
    "longer windows or more requests per window narrow the noise it allows"
)


def deciding_setting(reason: str) -> str | None:
    """The params.yaml key(s) behind a rollback reason; None when no setting decided (the
    canary failed its golden rows or warm-up, or could not be reached)."""
    for clue, setting in DECIDING_SETTINGS:
        if clue in reason:
            return setting
    return None


def how_to_tune(reason: str) -> str:
    """One sentence for a rollback summary: what decided and where to change it."""
    setting = deciding_setting(reason)
    if setting is None:
        return "no threshold: the canary failed a check it must pass (see the reason above)"
    note = f" ({CALIBRATED})" if "held-out rows before traffic" in reason else ""
    return f"`{setting}` in params.yaml{note}"
