"""Putting a controller together from the environment: which target, which metrics source.

DEPLOY_TARGET picks the target (`local`, the default, or `kubernetes`); PROMETHEUS_URL,
when set, makes metrics come from that Prometheus instead of each version's /metrics.
The history and an unfinished rollout live where the target does: files in .deploy/ for
the local target, the state ConfigMap on the cluster for the Kubernetes one.
"""

from __future__ import annotations

import os
import socket
from contextlib import AbstractContextManager
from pathlib import Path

from pr2prod import environment, paths
from pr2prod.deploy.controller import (
    EARLY_CHECK_SECONDS,
    EARLY_CHECK_SECONDS_PROMETHEUS,
    Controller,
    Observe,
)
from pr2prod.deploy.history import History
from pr2prod.deploy.observations import PrometheusSource, scrape
from pr2prod.deploy.records import FileRecord, Record
from pr2prod.deploy.target import Deployed, DeployTarget
from pr2prod.errors import Pr2prodError
from pr2prod.settings import CanarySettings, load_settings

TARGETS = ("local", "kubernetes")


def target_name() -> str:
    name = environment.DEPLOY_TARGET.value()
    if name not in TARGETS:
        raise Pr2prodError(f"DEPLOY_TARGET={name!r} is not one of {', '.join(TARGETS)}")
    return name


def make_target(
    settings: CanarySettings, name: str | None = None, router_port: int | None = None
) -> DeployTarget:
    name = name or target_name()
    if name == "kubernetes":
        from pr2prod.deploy.kubernetes import KubernetesTarget

        return KubernetesTarget(
            environment.KUBE_NAMESPACE.value(),
            context=environment.KUBE_CONTEXT.value() or None,
            drain_seconds=max(settings.drain_seconds, 10.0),  # Gateways apply weights slowly
            rollout_timeout_seconds=settings.progress_deadline_seconds,
            entry_url=environment.PR2PROD_ENTRY_URL.value(),
        )
    from pr2prod.deploy.local import LocalTarget

    return LocalTarget(paths.DEPLOY_STATE / "local", settings=settings, router_port=router_port)


def local_target(router_port: int | None = None) -> DeployTarget:
    """The local target, whatever DEPLOY_TARGET says (the rehearsal and `make up` use it)."""
    return make_target(load_settings().canary, "local", router_port=router_port)


def make_observer(name: str) -> Observe:
    prometheus = environment.PROMETHEUS_URL.value()
    if prometheus:
        # Kubernetes pods carry their track as a label (deploy/k8s/README.md's scrape job).
        source = PrometheusSource(prometheus, lambda role: f'track="{role}"')
        return lambda role, deployed: source.snapshot(role)
    if name == "kubernetes":
        raise Pr2prodError(
            "the kubernetes target reads metrics from Prometheus", hint="set PROMETHEUS_URL"
        )
    return lambda role, deployed: scrape(deployed.url)


def make_controller(settings: CanarySettings | None = None, say=print) -> Controller:
    settings = settings or load_settings().canary
    name = target_name()
    prometheus = bool(environment.PROMETHEUS_URL.value())
    target = make_target(settings, name)
    held_out = synthetic_records()
    return Controller(
        target=target,
        settings=settings,
        history=History(state_record(target, "history.jsonl")),
        state_path=state_record(target, "rollout.json"),
        observe=make_observer(name),
        synthetic_records=held_out,
        reference_records=held_out,
        early_check_seconds=EARLY_CHECK_SECONDS_PROMETHEUS if prometheus else EARLY_CHECK_SECONDS,
        say=say,
    )


def state_record(target: DeployTarget, key: str) -> Record:
    """Where `target`'s deployment keeps `key`: on the cluster, or in .deploy/."""
    from pr2prod.deploy.kubernetes import KubernetesTarget

    if isinstance(target, KubernetesTarget):
        return target.record(key)
    return FileRecord(paths.DEPLOY_STATE / key)


def deployment_lock(
    target: DeployTarget, wait_seconds: float | None = None
) -> AbstractContextManager[None]:
    """Held while a command changes what runs, for the whole command: a second rollout waits
    up to `wait_seconds` (default: the target's; none locally, up to 40 minutes on a cluster,
    where CI runs queue), then fails naming the rollout that holds it."""
    # In CI the holder is the run, so that a step ending a rollout its own run left midway
    # (a cancelled `pr2prod deploy`, killed while it held the lock) gets in at once.
    run = environment.GITHUB_RUN_ID.value()
    holder = f"CI run {run}" if run else f"{socket.gethostname()} pid {os.getpid()}"
    return target.locked(holder, wait_seconds)


def standalone_controller(
    target: DeployTarget, settings: CanarySettings, state_dir: Path, say=print
) -> Controller:
    """A controller keeping its rollout and history in `state_dir`, reading each version's
    /metrics: for rehearsals and benchmarks, which must not touch the real deployment."""
    return Controller(
        target,
        settings,
        History(state_dir / "history.jsonl"),
        state_path=state_dir / "rollout.json",
        observe=lambda role, deployed: scrape(deployed.url),
        say=say,
        reference_records=synthetic_records(),
    )


def synthetic_records() -> list[dict]:
    """Test rows (features only), for synthetic load when traffic is too low to judge."""
    if not paths.TEST_SPLIT.is_file():
        return []
    from pr2prod.data.records import split_records
    from pr2prod.schema import load_schema

    return split_records(paths.TEST_SPLIT, load_schema(paths.SCHEMA))


def describe(deployed: dict[str, Deployed]) -> str:
    return ", ".join(f"{role} {d.release} at {d.url}" for role, d in deployed.items()) or "nothing"
