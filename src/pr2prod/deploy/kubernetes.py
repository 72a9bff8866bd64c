"""The Kubernetes target: a stable and a canary Deployment behind a Gateway API HTTPRoute.

It drives the objects of `deploy/k8s/overlays/gateway` with kubectl: Deployments
`<app>-stable` and `<app>-canary` (container `<app>`), their Services, and the HTTPRoute
`<app>` whose one rule sends traffic to the stable Service (backend 0) and the canary
Service (backend 1) by weight. Between rollouts the canary has 0 replicas and weight 0.

The cluster is also the record of what was deployed, so production keeps working when no
CI artifact is left: each Deployment carries the release it runs in annotations (the
image reference, its digest and tag), and the ConfigMap `<app>-deploy` holds the
deployment history, any unfinished rollout and the lock that keeps two controllers (two
CI runs) from rolling out at once. The ConfigMap is written with its resourceVersion, so a
concurrent change makes the write fail and be retried instead of being lost.

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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from pr2prod.deploy.records import Change
from pr2prod.deploy.target import Deployed, Role, another_canary
from pr2prod.errors import Pr2prodError

logger = logging.getLogger("pr2prod.deploy")

# The fully qualified resource, so no other API group's HTTPRoute can be meant.
HTTPROUTE = "httproutes.gateway.networking.k8s.io"
SETUP_HINT = (
    "check the kubectl context and namespace, and that deploy/k8s/overlays/gateway was "
    "applied there (kubectl apply -k deploy/k8s/overlays/gateway -n <namespace>)"
)
# Annotations on each Deployment: the release it runs (as deployed), its digest and tag.
RELEASE_ANNOTATION = "pr2prod/release"
DIGEST_ANNOTATION = "pr2prod/image-digest"
TAG_ANNOTATION = "pr2prod/release-tag"
# On the state ConfigMap: who holds the deployment lock, and since when (JSON).
LOCK_ANNOTATION = "pr2prod/lock"
# A ConfigMap holds at most 1 MiB; the history keeps its newest lines within this.
HISTORY_MAX_CHARS = 800_000
# What kubectl says when a write carried an outdated resourceVersion.
CONFLICT = "the object has been modified"


class StateConflict(Pr2prodError):
    """The ConfigMap changed between reading and writing it."""


def release_annotations(release: str) -> dict[str, str | None]:
    """The annotations describing `release` (None: remove that annotation).

    `ghcr.io/o/r/pr2prod:1a2b@sha256:...` has the tag 1a2b and that digest; a reference by
    digest alone has no tag, one by tag alone no digest.
    """
    name, _, digest = release.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.split(":", 1)[1] if ":" in last else None
    return {RELEASE_ANNOTATION: release, DIGEST_ANNOTATION: digest or None, TAG_ANNOTATION: tag}


class KubernetesTarget:
    """Canary rollouts on one namespace of a cluster, through kubectl."""

    name = "kubernetes"
    # CI runs that deploy queue for the lock instead of failing: GitHub's `concurrency`
    # would cancel a waiting run in favour of a newer one.
    lock_wait_seconds = 2400.0

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
        self.state_configmap = f"{app}-deploy"
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

    def kubectl(self, *args: str, timeout: float = 60.0, input: str | None = None) -> str:
        """Run `kubectl <global flags> <args>` and return its stdout; raise on failure.

        `input` goes to kubectl's standard input (`--filename=-`)."""
        command = [self.executable, *self.global_flags, *args]
        shown = shlex.join(command)
        logger.info("$ %s", shown)
        try:
            result = subprocess.run(
                command,
                input=input if input is not None else "",
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
            error = StateConflict if CONFLICT in detail else Pr2prodError
            raise error(
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
        self._annotate(canary, release)
        self.kubectl("scale", f"deployment/{canary}", f"--replicas={self.canary_replicas}")
        self._wait_for_rollout(canary)
        return Deployed(release=release, url=self.service_url("canary"))

    def set_canary_weight(self, percent: int, release: str) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise Pr2prodError(
                f"canary weight must be a whole percent from 0 to 100, not {percent}"
            )
        image, replicas = self._deployments()["canary"]
        if replicas == 0:
            raise Pr2prodError("no canary to send traffic to: the canary Deployment has 0 replicas")
        self._check_canary(image, release)
        self._set_weights(canary_percent=percent)

    def promote(self, release: str) -> None:
        """Stable takes the canary's image (rolling update), then the canary is drained, stopped.

        During the stable rollout traffic keeps the canary's weight (100 after the last
        step), and the stable pods being replaced drain through their preStop hook. If the
        rollout fails the error is raised with traffic unchanged.
        """
        image, replicas = self._deployments()["canary"]
        if replicas == 0:
            raise Pr2prodError("no canary to promote: the canary Deployment has 0 replicas")
        self._check_canary(image, release)
        stable = self.deployments["stable"]
        self.kubectl("set", "image", f"deployment/{stable}", f"{self.container}={image}")
        self._annotate(stable, image)
        self._wait_for_rollout(stable)
        self._stop_canary()

    def abort_canary(self, release: str) -> None:
        """Canary weight 0 at once, then (after the drain time) the canary scaled to 0.

        A canary of another release is refused while it has replicas; with none, nothing of
        anyone's runs there, and taking it to weight 0 and 0 replicas is always safe."""
        image, replicas = self._deployments()["canary"]
        if replicas > 0:
            self._check_canary(image, release)
        self._stop_canary()

    def _check_canary(self, image: str, release: str) -> None:
        if image != release:
            where = f"deployment/{self.deployments['canary']} in namespace {self.namespace}"
            raise another_canary(image, release, where)

    def entry_url(self) -> str:
        if not self._entry_url:
            raise Pr2prodError(
                "no entry URL for the Kubernetes target",
                hint="pass entry_url: the address of the Gateway that serves the HTTPRoute",
            )
        return self._entry_url

    # -- the record on the cluster --------------------------------------------------------

    def record(self, key: str) -> ConfigMapRecord:
        """One key of the state ConfigMap (`history.jsonl`, `rollout.json`)."""
        limit = HISTORY_MAX_CHARS if key.endswith(".jsonl") else None
        return ConfigMapRecord(self, key, max_chars=limit)

    def read_state(self) -> dict[str, Any] | None:
        """The state ConfigMap as the API server has it, or None before the first write."""
        found = self.kubectl(
            "get", f"configmap/{self.state_configmap}", "--output=json", "--ignore-not-found"
        )
        return json.loads(found) if found.strip() else None

    def change_state(
        self, change: Callable[[dict[str, Any]], bool | None], attempts: int = 5
    ) -> None:
        """Read the ConfigMap, `change` it in place, write it back; again on a conflict.

        When `change` returns False it changed nothing, and nothing is written."""
        for attempt in range(1, attempts + 1):
            current = self.read_state()
            if current is None:
                current = {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": self.state_configmap,
                        "labels": {"app.kubernetes.io/name": self.container},
                    },
                    "data": {},
                }
            current.setdefault("data", {})
            current["metadata"].setdefault("annotations", {})
            if change(current) is False:
                return
            # With a resourceVersion, `replace` fails if anyone wrote in between.
            verb = "replace" if current["metadata"].get("resourceVersion") else "create"
            try:
                self.kubectl(verb, "--filename=-", input=json.dumps(current))
                return
            except StateConflict:
                if attempt == attempts:
                    raise
            except Pr2prodError as error:  # two first writers: one `create` loses
                if verb != "create" or "AlreadyExists" not in str(error) or attempt == attempts:
                    raise

    @contextmanager
    def locked(
        self, holder: str, wait_seconds: float | None = None, poll_seconds: float = 15.0
    ) -> Iterator[None]:
        """Hold the deployment lock while the block runs: one rollout on the cluster at once.

        CI runs that deploy wait here for each other (`lock_wait_seconds` by default)
        instead of being cancelled by GitHub's `concurrency` (which replaces a waiting job
        with a newer one). A lock older than twice the rollout timeout plus the wait is taken
        over: no rollout lasts that long, so its holder died without releasing it.
        """
        if wait_seconds is None:
            wait_seconds = self.lock_wait_seconds
        stale_after = self.rollout_timeout_seconds * 2 + wait_seconds
        deadline = time.monotonic() + wait_seconds
        announced = False
        while not self._try_lock(holder, stale_after):
            current = self._lock_holder()
            if time.monotonic() > deadline:
                raise Pr2prodError(
                    f"the deployment is locked by {current}",
                    hint="wait for that run to finish; if it died, remove the lock with "
                    f"`kubectl annotate configmap/{self.state_configmap} {LOCK_ANNOTATION}- "
                    f"-n {self.namespace}`",
                )
            if not announced:
                logger.warning("waiting for the deployment lock, held by %s", current)
                announced = True
            self._sleep(poll_seconds)
        try:
            yield
        finally:
            self.change_state(lambda state: _unlock(state, holder))

    def _try_lock(self, holder: str, stale_after: float) -> bool:
        taken = False

        def take(state: dict[str, Any]) -> bool:
            nonlocal taken
            taken = False  # again on each attempt: a retried write reads a newer state
            annotations = state["metadata"]["annotations"]
            current = _lock_of(state)
            if current and current.get("holder") != holder:
                if time.time() - float(current.get("since", 0)) < stale_after:
                    return False
                logger.warning("taking over a stale deployment lock of %s", current["holder"])
            annotations[LOCK_ANNOTATION] = json.dumps({"holder": holder, "since": time.time()})
            taken = True
            return True

        self.change_state(take)
        return taken

    def _lock_holder(self) -> str:
        current = _lock_of(self.read_state() or {"metadata": {}})
        if not current:
            return "nobody (just released)"
        since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(float(current["since"])))
        return f"{current['holder']} since {since}"

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

    def _annotate(self, deployment: str, release: str) -> None:
        """Record on the Deployment which release it runs (no pod restart: not the template)."""
        changes = [
            f"{key}={value}" if value is not None else f"{key}-"
            for key, value in release_annotations(release).items()
        ]
        self.kubectl("annotate", f"deployment/{deployment}", "--overwrite", *changes)

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


def _lock_of(state: dict[str, Any]) -> dict[str, Any] | None:
    raw = state["metadata"].get("annotations", {}).get(LOCK_ANNOTATION)
    try:
        return json.loads(raw) if raw else None
    except ValueError:
        return {"holder": f"unreadable lock {raw!r}", "since": 0}


def _unlock(state: dict[str, Any], holder: str) -> bool:
    current = _lock_of(state)
    if not current or current.get("holder") != holder:
        return False  # taken over meanwhile: not ours to remove
    del state["metadata"]["annotations"][LOCK_ANNOTATION]
    return True


class ConfigMapRecord:
    """One key of the Kubernetes target's state ConfigMap, as a deploy Record."""

    def __init__(self, target: KubernetesTarget, key: str, max_chars: int | None = None) -> None:
        self.target = target
        self.key = key
        self.max_chars = max_chars
        self.name = f"configmap/{target.state_configmap}:{key}"

    def read(self) -> str | None:
        state = self.target.read_state()
        return None if state is None else (state.get("data") or {}).get(self.key)

    def write(self, text: str) -> None:
        self.update(lambda _: text)

    def update(self, change: Change) -> None:
        def put(state: dict[str, Any]) -> None:
            state["data"][self.key] = change(state["data"].get(self.key))

        self.target.change_state(put)

    def delete(self) -> None:
        def remove(state: dict[str, Any]) -> bool:
            return state["data"].pop(self.key, None) is not None

        self.target.change_state(remove)
