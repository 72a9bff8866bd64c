"""The narrow interface between the controller and where versions run.

A target runs at most two versions, `stable` and `canary`, splits traffic between them
and says where each one's metrics are. The controller (steps, analysis, decisions,
history) never knows which target it talks to.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

Role = Literal["stable", "canary"]


@dataclass(frozen=True)
class Deployed:
    """One running version: what it is and where its endpoints are."""

    release: str  # what was deployed: a bento tag (local) or an image reference (kubernetes)
    url: str  # base URL of this version alone (health, /metrics, golden rows)


class DeployTarget(Protocol):
    name: str

    def running(self) -> dict[Role, Deployed]:
        """The versions running now, by role."""

    def start_canary(self, release: str) -> Deployed:
        """Start `release` next to stable with no traffic; return once it is listening."""

    def set_canary_weight(self, percent: int) -> None:
        """Send `percent` of traffic to the canary and the rest to stable."""

    def promote(self) -> None:
        """The canary becomes stable; the old stable is drained, then stopped."""

    def abort_canary(self) -> None:
        """Canary weight 0 at once, then drain and stop the canary; stable is untouched."""

    def entry_url(self) -> str:
        """Where clients send requests (the router, or the Gateway)."""
