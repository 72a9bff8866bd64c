"""The narrow interface between the controller and where versions run.

A target runs at most two versions, `stable` and `canary`, splits traffic between them
and says where each one's metrics are. The controller (steps, analysis, decisions,
history) never knows which target it talks to.

Every call that changes traffic or what runs names the release it means: a target refuses
(Pr2prodError) when the canary it finds is another release, so a rollout never moves or
promotes a canary it did not start. A whole rollout runs inside `locked`, which keeps a
second one from starting meanwhile, whoever starts it.
"""

from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Literal, Protocol

from pr2prod.errors import Pr2prodError

Role = Literal["stable", "canary"]
# The header a router adds to every answer, naming the role of the version that gave it.
BACKEND_HEADER = "x-pr2prod-backend"


@dataclass(frozen=True)
class Deployed:
    """One running version: what it is and where its endpoints are."""

    release: str  # what was deployed: a bento tag (local) or an image reference (kubernetes)
    url: str  # base URL of this version alone (health, /metrics, golden rows)


class DeployTarget(Protocol):
    name: str
    # How long `locked` waits by default for a rollout that holds the lock (0: not at all).
    lock_wait_seconds: float

    def locked(
        self, holder: str, wait_seconds: float | None = None
    ) -> AbstractContextManager[None]:
        """Hold the deployment lock while the block runs: one rollout at a time.

        Waits up to `wait_seconds` (default: `lock_wait_seconds`) for another holder, then
        raises a Pr2prodError naming it.
        `holder` says who holds it, for that message."""

    def running(self) -> dict[Role, Deployed]:
        """The versions running now, by role."""

    def start_canary(self, release: str) -> Deployed:
        """Start `release` next to stable with no traffic; return once it is listening."""

    def set_canary_weight(self, percent: int, release: str) -> None:
        """Send `percent` of traffic to the canary, which must be `release`, and the rest to
        stable."""

    def promote(self, release: str) -> None:
        """The canary, which must be `release`, becomes stable; the old stable is drained,
        then stopped."""

    def abort_canary(self, release: str) -> None:
        """Canary weight 0 at once, then drain and stop the canary, which must be `release`
        (no canary: nothing to do); stable is untouched."""

    def entry_url(self) -> str:
        """Where clients send requests (the router, or the Gateway)."""


def another_canary(found: str, expected: str, where: str) -> Pr2prodError:
    """The refusal of a call meant for `expected` when the canary is `found`."""
    return Pr2prodError(
        f"the canary on {where} is {found}, not {expected}: another rollout started it, "
        "so this one leaves it alone",
        hint="see what runs with `make deploy-status`; once that rollout has ended, "
        "`make abort` stops any canary left, then deploy again",
    )
