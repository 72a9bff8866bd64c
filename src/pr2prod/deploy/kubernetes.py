"""The Kubernetes target: a stable and a canary Deployment behind a Gateway API HTTPRoute.

It drives the objects of `deploy/k8s/overlays/gateway` with kubectl: Deployments
`<app>-stable` and `<app>-canary` (container `<app>`), their Services, and the HTTPRoute
`<app>` whose one rule sends traffic to the stable Service (backend 0) and the canary
Service (backend 1) by weight. Between rollouts the canary has 0 replicas and weight 0.

Every kubectl command goes through `KubernetesTarget.kubectl`, so a run can be recorded
and replayed (the tests put a kubectl double on the path and check the exact sequence).
A failed command raises `Pr2prodError` with the command line and kubectl's stderr.
"""

from __future__ import annotations

import json
import logging
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pr2prod.deploy.target import Deployed, Role
from pr2prod.errors import Pr2prodError

logger = logging.getLogger("pr2prod.deploy")

# The fully qualified resource, so no other API group's HTTPRoute can be meant.
HTTPROUTE = "httproutes.gateway.networking.k8s.io"
SETUP_HINT = (
    "check the kubectl context and namespace, and that deploy/k8s/overlays/gateway was "
    "applied there (kubectl apply -k deploy/k8s/overlays/gateway -n <namespace>)"
)


class KubernetesTarget:
    """Canary rollouts on one namespace of a cluster, through kubectl."""

    name = "kubernetes"

    def __init__(
        self,
        namespace: str,
        *,
        context: str | None = None,
        kubeconfig: str | Path | None = None,
        kubectl: str | Path = "kubectl",
        app: str = "pr2prod",
        port: int = 3000,
        canary_replicas: int = 1,
        rollout_timeout_seconds: float = 600.0,
        drain_seconds: float = 10.0,
        entry_url: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if not namespace:
            raise Pr2prodError("the Kubernetes target needs a namespace")
        if canary_replicas < 1:
            raise Pr2prodError(f"canary_replicas must be at least 1, not {canary_replicas}")
        self.namespace = namespace
        self.executable = str(kubectl)
        self.global_flags: list[str] = []
        if kubeconfig:
            self.global_flags += ["--kubeconfig", str(kubeconfig)]
        if context:
            self.global_flags += ["--context", context]
        self.global_flags += ["--namespace", namespace]
        self.container = app
        self.route = app
        self.deployments: dict[Role, str] = {"stable": f"{app}-stable", "canary": f"{app}-canary"}
        self.port = port
        self.canary_replicas = canary_replicas
        self.rollout_timeout_seconds = rollout_timeout_seconds
        # Between taking a version's route weight to 0 and scaling it down: the time the
        # Gateway takes to stop sending it new requests. (Each pod's preStop sleep then
        # covers the Service endpoints.)
        self.drain_seconds = drain_seconds
        self._entry_url = entry_url
        self._sleep = sleep

    # -- the one way to run kubectl ---------------------------------------------------------

    def kubectl(self, *args: str, timeout: float = 60.0) -> str:
        """Run `kubectl <global flags> <args>` and return its stdout; raise on failure."""
        command = [self.executable, *self.global_flags, *args]
        shown = shlex.join(command)
        logger.info("$ %s", shown)
        try:
            result = subprocess.run(
                command,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise Pr2prodError(
                f"kubectl not found: {self.executable}",
                hint="install kubectl or pass its path to KubernetesTarget(kubectl=...)",
            ) from None
        except subprocess.TimeoutExpired:
            raise Pr2prodError(f"`{shown}` did not finish within {timeout:.0f} s") from None
        if result.returncode != 0:
            detail = (result.stderr or result.stdout).strip() or "(no output)"
            raise Pr2prodError(
                f"`{shown}` failed (exit {result.returncode}): {detail}",
                hint=SETUP_HINT if "NotFound" in detail else "",
            )
        return result.stdout

    # -- the DeployTarget protocol ------------------------------------------------------------

    def running(self) -> dict[Role, Deployed]:
        """Stable always; the canary when it has replicas. Images as the Deployments say."""
        running: dict[Role, Deployed] = {}
        for role, (image, replicas) in self._deployments().items():
            if role == "stable" or replicas > 0:
                running[role] = Deployed(release=image, url=self.service_url(role))
        return running

    def start_canary(self, release: str) -> Deployed:
        """Canary weight 0, the canary's image set, scaled up, and ready (/readyz passes)."""
        if not release or any(char.isspace() for char in release):
            raise Pr2prodError(f"not an image reference: {release!r}")
        canary = self.deployments["canary"]
        self._set_weights(canary_percent=0)  # no traffic to it, whatever an earlier run left
        self.kubectl("set", "image", f"deployment/{canary}", f"{self.container}={release}")
        self.kubectl("scale", f"deployment/{canary}", f"--replicas={self.canary_replicas}")
        self._wait_for_rollout(canary)
        return Deployed(release=release, url=self.service_url("canary"))

    def set_canary_weight(self, percent: int) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise Pr2prodError(
                f"canary weight must be a whole percent from 0 to 100, not {percent}"
            )
        self._set_weights(canary_percent=percent)

    def promote(self) -> None:
        """Stable takes the canary's image (rolling update), then the canary is drained, stopped.

        During the stable rollout traffic keeps the canary's weight (100 after the last
        step), and the stable pods being replaced drain through their preStop hook. If the
        rollout fails the error is raised with traffic unchanged.
        """
        image, replicas = self._deployments()["canary"]
        if replicas == 0:
            raise Pr2prodError("no canary to promote: the canary Deployment has 0 replicas")
        stable = self.deployments["stable"]
        self.kubectl("set", "image", f"deployment/{stable}", f"{self.container}={image}")
        self._wait_for_rollout(stable)
        self._stop_canary()

    def abort_canary(self) -> None:
        """Canary weight 0 at once, then (after the drain time) the canary scaled to 0."""
        self._stop_canary()

    def entry_url(self) -> str:
        if not self._entry_url:
            raise Pr2prodError(
                "no entry URL for the Kubernetes target",
                hint="pass entry_url: the address of the Gateway that serves the HTTPRoute",
            )
        return self._entry_url

    # -- helpers --------------------------------------------------------------------------------

    def service_url(self, role: Role) -> str:
        """The in-cluster address of one version's Service (its pods, not the split)."""
        return f"http://{self.deployments[role]}.{self.namespace}.svc:{self.port}"

    def _deployments(self) -> dict[Role, tuple[str, int]]:
        """(image, wanted replicas) of the stable and the canary Deployment."""
        names = self.deployments
        listing = json.loads(
            self.kubectl("get", "deployments", names["stable"], names["canary"], "--output=json")
        )
        items = listing.get("items", [listing]) if isinstance(listing, dict) else []
        by_name = {item.get("metadata", {}).get("name"): item for item in items}
        found: dict[Role, tuple[str, int]] = {}
        for role, name in names.items():
            if name not in by_name:
                raise Pr2prodError(f"kubectl listed no Deployment {name}", hint=SETUP_HINT)
            found[role] = (
                self._image(by_name[name]),
                int(by_name[name]["spec"].get("replicas", 1)),
            )
        return found

    def _image(self, deployment: dict[str, Any]) -> str:
        containers = deployment["spec"]["template"]["spec"]["containers"]
        for container in containers:
            if container.get("name") == self.container:
                return str(container["image"])
        names = [container.get("name") for container in containers]
        raise Pr2prodError(
            f"Deployment {deployment['metadata']['name']} has no container {self.container!r} "
            f"(it has {names})"
        )

    def _set_weights(self, canary_percent: int) -> None:
        stable, canary = self.deployments["stable"], self.deployments["canary"]
        backends = "/spec/rules/0/backendRefs"
        patch = [
            # A route whose backends are not (stable, canary) in this order is refused
            # by the API server instead of getting the wrong weights.
            {"op": "test", "path": f"{backends}/0/name", "value": stable},
            {"op": "test", "path": f"{backends}/1/name", "value": canary},
            # "add" sets the member whether or not the route spelled the weight out.
            {"op": "add", "path": f"{backends}/0/weight", "value": 100 - canary_percent},
            {"op": "add", "path": f"{backends}/1/weight", "value": canary_percent},
        ]
        self.kubectl(
            "patch",
            f"{HTTPROUTE}/{self.route}",
            "--type=json",
            f"--patch={json.dumps(patch, separators=(',', ':'))}",
        )

    def _wait_for_rollout(self, deployment: str) -> None:
        seconds = int(self.rollout_timeout_seconds)
        self.kubectl(
            "rollout",
            "status",
            f"deployment/{deployment}",
            f"--timeout={seconds}s",
            timeout=seconds + 60,
        )

    def _stop_canary(self) -> None:
        self._set_weights(canary_percent=0)
        self._sleep(self.drain_seconds)
        self.kubectl("scale", f"deployment/{self.deployments['canary']}", "--replicas=0")
