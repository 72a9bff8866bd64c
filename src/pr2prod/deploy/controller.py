"""The canary controller: steps, analysis windows, the decision, and the history.

It talks to a DeployTarget (where versions run) and to an observer (where their metrics come
from), never to a particular platform. Its progress is saved after every window, so a
controller that dies mid-rollout can be re-run: it resumes when the canary is still
there, and otherwise rolls back cleanly. Stable serves throughout.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from contextlib import nullcontext
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import httpx

from pr2prod.deploy.analysis import Analysis, absolute_failures, analyse
from pr2prod.deploy.calibration import Reference, TaskChanged, ValueReference, ask_reference
from pr2prod.deploy.checks import golden_rows_answered
from pr2prod.deploy.history import Decision, History, WindowRecord
from pr2prod.deploy.load import SteadyLoad
from pr2prod.deploy.observations import (
    MetricsUnavailable,
    Snapshot,
    VersionUnreachable,
    Window,
)
from pr2prod.deploy.records import Record, as_record
from pr2prod.deploy.target import Deployed, DeployTarget
from pr2prod.errors import Pr2prodError
from pr2prod.readiness import NotReady, wait_until_ready
from pr2prod.settings import CanarySettings

# How often a window looks for a canary that has already failed, reading each version's
# /metrics: every second a failing canary keeps its traffic is a second of client errors
# (or, with retry-on-stable, of doubled work). A Prometheus source knows nothing newer than
# its last scrape, so looking more often than that only costs queries.
EARLY_CHECK_SECONDS = 0.25
EARLY_CHECK_SECONDS_PROMETHEUS = 5.0

# Reads one running version's cumulative metrics: (role, where it runs) -> figures.
Observe = Callable[[str, Deployed], Snapshot]
# Stable's and the canary's snapshots where a window's evidence starts.
Start = tuple[Snapshot, Snapshot]


@dataclass
class Rollout:
    """A rollout in progress, as saved between windows (its windows as in the history)."""

    release: str
    previous: str | None
    git_sha: str | None
    model_version: str | None
    started: float  # wall-clock time, so a re-run controller keeps the same deadline
    step: int = 0  # index into settings.steps
    failures: int = 0
    inconclusive_in_a_row: int = 0
    windows: list[WindowRecord] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        saved = {item.name: getattr(self, item.name) for item in fields(self)}
        return saved | {"windows": [window.to_json() for window in self.windows]}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Rollout:
        windows = [WindowRecord.from_json(window) for window in data.get("windows", ())]
        return cls(**{**data, "windows": windows})


@dataclass(frozen=True)
class Trial:
    """What a rollout of the running canary would decide, judged without acting on it."""

    release: str
    problem: str | None  # why it would be rolled back; None: it would be promoted
    windows: tuple[WindowRecord, ...]

    @property
    def promoted(self) -> bool:
        return self.problem is None


def last_window_suspect(rollout: Rollout) -> bool:
    """Whether the last window judged was suspect (a first latency breach at this step).

    Read from the saved windows, so a controller re-run mid-rollout remembers it.
    """
    return bool(rollout.windows) and rollout.windows[-1].outcome == "suspect"


class Controller:
    def __init__(
        self,
        target: DeployTarget,
        settings: CanarySettings,
        history: History,
        state_path: Path | Record,
        observe: Observe,
        synthetic_records: list[dict[str, Any]] | None = None,
        early_check_seconds: float = EARLY_CHECK_SECONDS,
        say: Callable[[str], None] = print,
        reference_records: list[dict[str, Any]] | None = None,
    ) -> None:
        self.target = target
        self.settings = settings
        self.history = history
        # The unfinished rollout, if any (a file, or a key of the cluster's ConfigMap).
        self.state = as_record(state_path)
        self.observe = observe
        self.synthetic_records = synthetic_records or []
        self.early_check_seconds = early_check_seconds
        self.say = say
        # Held-out rows both versions answer before traffic (pr2prod.deploy.calibration).
        self.reference_records = reference_records or []
        self.reference: Reference | ValueReference | None = None

    # -- the canary ---------------------------------------------------------------------

    def deploy(
        self, release: str, git_sha: str | None = None, model_version: str | None = None
    ) -> Decision:
        """Roll `release` out as a canary; return the decision (promoted or rolled back)."""
        rollout = self._load()
        if rollout is not None and rollout.release != release:
            self._roll_back(rollout, f"superseded by a rollout of {release}")
            rollout = None
        running = self.target.running()
        stable = running.get("stable")
        if stable is None:
            return self._first_deploy(release, git_sha, model_version)
        if stable.release == release and rollout is None:
            raise Pr2prodError(f"{release} is already the stable version: nothing to deploy")
        canary = running.get("canary")
        if rollout is not None:
            if canary is None or canary.release != release:
                return self._roll_back(rollout, "the controller restarted and the canary is gone")
            self.say(f"deploy: resuming the rollout of {release} at step {rollout.step + 1}")
        else:
            if canary is not None:
                self.say(f"deploy: stopping a leftover canary {canary.release}")
                self.target.abort_canary(canary.release)
            rollout = Rollout(release, stable.release, git_sha, model_version, time.time())
            canary = self._start(
                rollout, f"deploy: starting {release} next to {stable.release}, with no traffic"
            )
        problem = self._pre_traffic_problem(canary) or self._reference_problem(stable, canary)
        if problem:
            return self._roll_back(rollout, problem)
        return self._step_through(rollout)

    def _pre_traffic_problem(self, canary: Deployed) -> str | None:
        timeout = self.settings.readiness_timeout_seconds
        try:
            wait_until_ready(canary.url, timeout)
        except NotReady:
            return f"the canary was not ready within {timeout:g} s"
        passed, detail = golden_rows_answered(canary.url)
        self.say(f"deploy: canary ready; {detail}")
        return None if passed else detail

    def _reference_problem(self, stable: Deployed, canary: Deployed) -> str | None:
        """Ask both versions the held-out rows; a canary whose answers already differ from
        stable's by more than `prediction_divergence_max` gets no traffic at all."""
        if not self.reference_records:
            self.say("deploy: no held-out rows here: predictions are held to the fixed limit")
            return None
        try:
            self.reference = ask_reference(stable.url, canary.url, self.reference_records)
        except TaskChanged as changed:
            # Stable's clients would get answers of another shape: no canary can replace it.
            return (
                f"before any traffic: {changed}, so stable's clients would get answers of "
                "another shape: a model for another task is a new service, not a canary "
                "of this one"
            )
        except (httpx.HTTPError, KeyError, ValueError) as error:
            return f"the canary did not answer the held-out rows: {error!r}"
        if self.reference is None:
            self.say("deploy: stable and canary predict different classes: fixed limit")
            return None
        offline = self.reference.offline()
        limit = self.settings.thresholds.prediction_divergence_max
        self.say(
            f"deploy: on {self.reference.rows} held-out rows the canary's predictions diverge "
            f"from stable's by {offline.describe()}"
        )
        found = offline.beyond(limit)
        if not found:
            return None
        return (
            f"before any traffic, on the same {self.reference.rows} held-out rows: "
            f"{'; '.join(found)} (Jensen-Shannon): the canary's answers already differ from "
            "stable's by more than a retrained model's"
        )

    def trial(self, release: str) -> Trial:
        """Judge the running canary `release` as a rollout would, without acting on it.

        The checks before traffic, then every step's windows; then the canary goes back to
        no traffic and both versions keep running, with nothing kept in the history or the
        rollout state. Many trials against one pair of running versions tell how often the
        analysis would roll back a canary, at a fraction of the cost of as many rollouts
        (each of which starts a version, then promotes or stops one).
        """
        if self._load() is not None:
            raise Pr2prodError(
                "a rollout is in progress", hint="re-run `make deploy` to finish or roll it back"
            )
        running = self.target.running()
        stable, canary = running.get("stable"), running.get("canary")
        if stable is None or canary is None or canary.release != release:
            raise Pr2prodError(
                f"a trial judges a canary already running: {release} is not the canary "
                f"(running: {', '.join(f'{role} {d.release}' for role, d in running.items())})",
                hint="start it next to stable first (the target's start_canary)",
            )
        rollout = Rollout(release, stable.release, None, None, time.time())
        try:
            problem = (
                self._pre_traffic_problem(canary)
                or self._reference_problem(stable, canary)
                or self._judge_steps(rollout)
            )
        finally:
            self.target.set_canary_weight(0, release)
            self.state.delete()
        return Trial(release, problem, tuple(rollout.windows))

    def _start(self, rollout: Rollout, announcement: str) -> Deployed:
        """Start the rollout's release with no traffic, saving the rollout first: a
        controller killed while the canary starts finds it on its next run."""
        self._save(rollout)
        self.say(announcement)
        return self.target.start_canary(rollout.release)

    def _step_through(self, rollout: Rollout) -> Decision:
        problem = self._judge_steps(rollout)
        if problem:
            return self._roll_back(rollout, problem)
        return self._promote(rollout, "promoted", "every step passed its analysis")

    def _judge_steps(self, rollout: Rollout) -> str | None:
        """Take the canary through the steps, judging a window at each: None when every
        step passed, otherwise why the rollout must be rolled back."""
        # The last step (100%) is the promotion itself: with no traffic left on stable there
        # is nothing to compare the canary with, so every step before it must have passed.
        steps = [step for step in self.settings.steps if step < 100]
        since: Start | None = None  # evidence kept while a step holds
        while rollout.step < len(steps):
            if time.time() - rollout.started > self.settings.progress_deadline_seconds:
                deadline = self.settings.progress_deadline_seconds
                return f"no decision within the {deadline:g} s deadline"
            weight = steps[rollout.step]
            try:
                self.target.set_canary_weight(weight, rollout.release)
            except Pr2prodError as error:  # e.g. the canary died between two windows
                return f"canary unreachable: {error}"
            analysis, start = self._analyse_window(weight, since, last_window_suspect(rollout))
            window = WindowRecord.judged(rollout.step + 1, weight, analysis)
            rollout.windows.append(window)
            outcome = window.outcome
            self.say(
                f"deploy: step {window.step}/{len(steps)} at {weight}%: {outcome}"
                + (f" ({'; '.join(window.reasons)})" if window.reasons else "")
            )
            # Only an inconclusive window is extended; any other starts the next one afresh
            # (after a suspect window, the breach must show again by itself, not by carrying
            # this window's slow requests along).
            since = None
            if outcome == "fail":
                rollout.failures += 1
                if rollout.failures >= self.settings.max_failures:
                    return "; ".join(window.reasons)
            elif outcome == "inconclusive":
                # Hold the step and keep counting from the same start: evidence adds up
                # until there is enough to judge (e.g. a slow canary that gets few requests).
                since = start
                rollout.inconclusive_in_a_row += 1
                if rollout.inconclusive_in_a_row > self.settings.max_inconclusive:
                    return (
                        f"{rollout.inconclusive_in_a_row} inconclusive windows in a row: "
                        "not enough traffic to judge the canary"
                    )
            elif outcome == "pass":
                rollout.inconclusive_in_a_row = 0
                rollout.step += 1
            self._save(rollout)
        return None

    def _analyse_window(
        self, weight: int, since: Start | None, breached_before: bool
    ) -> tuple[Analysis, Start | None]:
        """Judge one window at `weight`, counting from `since` when the step is held.

        With the judgement comes where the window's evidence started, when it was read to
        the end: an inconclusive window is extended from there.
        """
        running = self.target.running()
        stable, canary = running["stable"], running.get("canary")
        try:
            before = since or (self.observe("stable", stable), self._observe_canary(canary))
            with self._synthetic_load():
                early = self._watch(before[1], canary)
            if early:
                return Analysis("fail", [early], {}), None
            canary_now = self.target.running().get("canary")
            after = (self.observe("stable", stable), self._observe_canary(canary_now))
        except VersionUnreachable as error:
            return Analysis("fail", [f"canary unreachable: {error}"], {}), None
        except MetricsUnavailable as error:  # the metrics source is down, not the canary
            return Analysis("inconclusive", [str(error)], {}), None
        analysis = analyse(
            Window.between(before[0], after[0]),
            Window.between(before[1], after[1]),
            self.settings.thresholds,
            self.settings.min_requests,
            breached_before,
            self.reference,
        )
        return analysis, before

    def _watch(self, canary_before: Snapshot, canary: Deployed | None) -> str | None:
        """Wait out the window, stopping early once the canary's failure is certain.

        Certain means the absolute caps are broken by what has been seen already, however
        the rest of the window goes (e.g. 3 errors when 50 requests may have 2.5 at most),
        or the canary died. Relative checks need the whole window's baseline, so they wait.
        """
        deadline = time.monotonic() + self.settings.window_seconds
        while (remaining := deadline - time.monotonic()) > 0:
            time.sleep(min(self.early_check_seconds, remaining))
            # A dead canary fails its scrape; asking the target who runs (kubectl, for
            # Kubernetes) on every look would cost more than the look itself.
            so_far = Window.between(canary_before, self._observe_canary(canary))
            failures = absolute_failures(
                so_far, self.settings.thresholds, self.settings.min_requests
            )
            if failures:
                return f"{'; '.join(failures)} (stopped the window early)"
        return None

    def _observe_canary(self, canary: Deployed | None) -> Snapshot:
        if canary is None:
            raise VersionUnreachable("the canary process is gone")
        return self.observe("canary", canary)

    def _synthetic_load(self):
        rate = self.settings.synthetic_load_rps
        if rate <= 0 or not self.synthetic_records:
            return nullcontext()
        return SteadyLoad(self.target.entry_url(), self.synthetic_records, rate)

    # -- outcomes -------------------------------------------------------------------------

    def _roll_back(self, rollout: Rollout, reason: str) -> Decision:
        self.say(f"deploy: rolling back {rollout.release}: {reason}")
        self.target.abort_canary(rollout.release)
        return self._finish(rollout, "rolled-back", reason)

    def _first_deploy(self, release: str, git_sha: str | None, model: str | None) -> Decision:
        """No stable version yet: check the release, then give it all traffic."""
        rollout = Rollout(release, None, git_sha, model, time.time())
        canary = self._start(
            rollout, f"deploy: no stable version yet: {release} becomes stable after its checks"
        )
        problem = self._pre_traffic_problem(canary)
        if problem:
            return self._roll_back(rollout, problem)
        return self._promote(rollout, "first-deploy", "first version: nothing to compare with")

    def _promote(self, rollout: Rollout, outcome: str, reason: str) -> Decision:
        """Give the canary all the traffic and make it stable."""
        self.target.set_canary_weight(100, rollout.release)
        self.target.promote(rollout.release)
        return self._finish(rollout, outcome, reason)

    def _finish(self, rollout: Rollout, outcome: str, reason: str) -> Decision:
        decision = Decision(
            release=rollout.release,
            decision=outcome,
            reason=reason,
            previous=rollout.previous,
            git_sha=rollout.git_sha,
            model_version=rollout.model_version,
            target=self.target.name,
            windows=tuple(rollout.windows),
        )
        self.history.append(decision)
        self.state.delete()
        self.say(f"deploy: {outcome}: {rollout.release} ({reason})")
        return decision

    def abort(self, reason: str) -> bool:
        """Take any canary out of traffic and stop it; record an unfinished rollout as rolled
        back. Idempotent. True when a stable version serves afterwards."""
        rollout = self._load()
        canary = self.target.running().get("canary")
        if canary is not None and (rollout is None or canary.release != rollout.release):
            # Whichever canary runs, even one no saved rollout knows: this is the way out
            # the targets point to when they refuse another rollout's canary.
            self.target.abort_canary(canary.release)
        if rollout is not None:
            self._roll_back(rollout, reason)
        return "stable" in self.target.running()

    # -- manual rollback --------------------------------------------------------------------

    def rollback(self, to: str | None = None) -> Decision:
        """Make an earlier good release stable again (default: the one before the current)."""
        if self._load() is not None:
            raise Pr2prodError(
                "a rollout is in progress", hint="re-run `make deploy` to finish or roll it back"
            )
        stable = self.target.running().get("stable")
        good = self.history.good_releases()
        current = stable.release if stable else None
        candidates = [release for release in good if release != current]
        if to is None:
            if not candidates:
                raise Pr2prodError("no earlier good release in the deployment history")
            to = candidates[-1]
        elif to not in good:
            raise Pr2prodError(
                f"{to} never served as a good stable version",
                hint=f"choose one of: {', '.join(good) or '(none yet)'}",
            )
        if to == current:
            raise Pr2prodError(f"{to} is already the stable version")
        rollout = Rollout(to, current, None, None, time.time())
        self.say(f"rollback: bringing back {to} in place of {current}")
        canary = self.target.start_canary(to)
        problem = self._pre_traffic_problem(canary)
        if problem:
            self.target.abort_canary(to)
            raise Pr2prodError(f"{to} cannot be brought back: {problem}; {current} still serves")
        return self._promote(rollout, "manual-rollback", f"requested: back to {to}")

    # -- state -------------------------------------------------------------------------------

    def _load(self) -> Rollout | None:
        saved = self.state.read()
        return None if saved is None else Rollout.from_json(json.loads(saved))

    def _save(self, rollout: Rollout) -> None:
        self.state.write(json.dumps(rollout.to_json(), indent=2))
