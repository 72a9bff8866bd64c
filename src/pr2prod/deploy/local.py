"""The local target: stable, canary and the router as real processes on this host.

Everything a later command needs is in `<state dir>/state.json` (default `.deploy/local/`),
so `make up`, `make status`, `make down` and a controller re-run after a crash all see the
same deployment. Each version is a `bentoml serve` of its own unpacked copy of the bento,
with its own BENTOML_HOME (two servers sharing one would wipe each other's metrics):

    <state dir>/state.json        router, stable, canary (PIDs, ports, URLs), canary weight
    <state dir>/router.log
    <state dir>/versions/<bento version>-<suffix>/{bento/, home/, serve.log}

Processes are started in their own sessions, so they outlive the command that started
them, and are stopped by recorded PID only (checked against the command line, so a reused
PID is never mistaken for ours).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import secrets
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import psutil

from pr2prod import environment
from pr2prod.deploy.records import write_atomically
from pr2prod.deploy.target import Deployed, Role, another_canary
from pr2prod.errors import Pr2prodError
from pr2prod.ports import free_port
from pr2prod.processes import log_tail
from pr2prod.readiness import Watched, wait_until_ready
from pr2prod.settings import CanarySettings

DEFAULT_STATE_DIR = Path(".deploy") / "local"
HOST = "127.0.0.1"
ROUTER_MODULE = "pr2prod.deploy.router"


@dataclass(frozen=True)
class RouterRecord:
    pid: int
    port: int
    url: str
    log: str
    admin_port: int = 0  # 0: a router from before the admin API had a port of its own
    # The admin API's bearer token; the state file is readable by its owner only.
    token: str = field(default="", repr=False)

    @property
    def signature(self) -> tuple[str, ...]:
        """Arguments only our process has in its command line."""
        return (ROUTER_MODULE, str(self.port))

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port, self.admin_port)

    def admin(self, method: str, path: str, **options: Any) -> httpx.Response:
        """A call to the router's admin API (`path` under /-/), token included."""
        headers = {"authorization": f"Bearer {self.token}"}
        url = f"http://{HOST}:{self.admin_port}/-/{path}"
        return httpx.request(method, url, headers=headers, timeout=5, **options)


@dataclass(frozen=True)
class VersionRecord:
    release: str  # the bento tag
    pid: int  # the `bentoml serve` process (its workers are its children)
    port: int
    url: str
    home: str  # this version's own BENTOML_HOME
    folder: str
    log: str

    @property
    def bento(self) -> Path:
        return Path(self.folder) / "bento"

    @property
    def signature(self) -> tuple[str, ...]:
        return (str(self.bento),)  # a folder unique to this version

    @property
    def ports(self) -> tuple[int, ...]:
        return (self.port,)


Record = RouterRecord | VersionRecord


@dataclass(frozen=True)
class DeployState:
    router: RouterRecord | None = None
    stable: VersionRecord | None = None
    canary: VersionRecord | None = None
    canary_weight: int = 0
    # Out of traffic but not stopped yet: if a command dies while draining, the next one
    # still knows these processes and stops them.
    retiring: tuple[VersionRecord, ...] = ()

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> DeployState:
        raw = json.loads(text)
        return cls(
            router=RouterRecord(**raw["router"]) if raw.get("router") else None,
            stable=VersionRecord(**raw["stable"]) if raw.get("stable") else None,
            canary=VersionRecord(**raw["canary"]) if raw.get("canary") else None,
            canary_weight=int(raw.get("canary_weight", 0)),
            retiring=tuple(VersionRecord(**item) for item in raw.get("retiring", [])),
        )


# --- processes --------------------------------------------------------------------------


def own_process(record: Record) -> psutil.Process | None:
    """The process we started as `record.pid`, if it still runs.

    A zombie counts as gone. A process that got the same PID later is told apart by its
    command line (start times are no help: psutil derives them from the wall clock).
    """
    try:
        process = psutil.Process(record.pid)
        if process.status() == psutil.STATUS_ZOMBIE:
            reap(record.pid)
            return None
        arguments = process.cmdline()
        if not arguments and process.ppid() == os.getpid():
            # Our child, just spawned: the kernel lets its exec finish after Popen returns,
            # and until then the new command line reads empty (seen as a "process exited
            # before listening" with an empty log).
            return process
    except psutil.Error:
        return None
    return process if has_signature(arguments, record) else None


def has_signature(arguments: list[str], record: Record) -> bool:
    return all(part in arguments for part in record.signature)


def alive(record: Record) -> bool:
    return own_process(record) is not None


def reap(pid: int) -> None:
    """Collect the exit status if `pid` is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def spawn(command: list[str], log: Path, env: dict[str, str], cwd: Path) -> int:
    """Start `command` in its own session, so it outlives us; return its PID."""
    with log.open("ab") as output:
        process = subprocess.Popen(
            command,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    return process.pid


def listens(process: psutil.Process, port: int) -> bool:
    try:
        sockets = process.net_connections(kind="tcp")
    except psutil.Error:
        return False
    return any(s.status == psutil.CONN_LISTEN and s.laddr.port == port for s in sockets)


def wait_listening(record: Record, timeout: float) -> None:
    """Until our process itself listens on its port (not some other process that took it).

    Not a readiness check (pr2prod.readiness asks a server whether it serves): a port
    chosen free may be taken by another program before ours binds it, and an answer on it
    would then come from that program. Only the kernel's socket table says whose it is.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        process = own_process(record)
        if process is None:
            raise Pr2prodError(
                f"process {record.pid} exited before listening on {record.port}:\n"
                f"{log_tail(record.log)}"
            )
        if all(listens(process, port) for port in record.ports):
            return
        time.sleep(0.1)
    ports = " and ".join(map(str, record.ports))
    raise Pr2prodError(
        f"process {record.pid} did not listen on {ports} within {timeout} s:\n"
        f"{log_tail(record.log)}"
    )


def tcp_listeners(port: int) -> list[psutil.Process]:
    found: list[psutil.Process] = []
    try:
        entries = psutil.net_connections(kind="tcp")
    except psutil.AccessDenied:  # macOS without root: only the recorded PIDs are known
        return found
    for entry in entries:
        if entry.status == psutil.CONN_LISTEN and entry.laddr.port == port and entry.pid:
            with contextlib.suppress(psutil.Error):
                found.append(psutil.Process(entry.pid))
    return found


ProcessGroup = tuple[psutil.Process | None, list[psutil.Process]]  # (root, its workers)


def version_processes(record: VersionRecord) -> ProcessGroup:
    """(the serve process if alive, its workers) for one version.

    A worker whose serve process was killed is no longer its child but still holds the
    port (and would go on serving): it is found by the port and recognised by our bento
    folder in its command line.
    """
    root = own_process(record)
    workers: list[psutil.Process] = []
    if root is not None:
        with contextlib.suppress(psutil.Error):
            workers = root.children(recursive=True)
    for process in tcp_listeners(record.port):
        with contextlib.suppress(psutil.Error):
            mine = has_signature(process.cmdline(), record)
            if mine and process != root and process not in workers:
                workers.append(process)
    return root, workers


def crash(version: VersionRecord) -> None:
    """Kill a version as a crash would: all its processes at once, no cleanup (for the
    canary benchmark and tests).

    Killing the `bentoml serve` process alone is no crash: its worker runs in a session of
    its own and goes on serving.
    """
    root, workers = version_processes(version)
    for process in [*workers, *([root] if root else [])]:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()


def stop_groups(groups: list[ProcessGroup], timeout: float) -> None:
    """Stop several process groups at once: SIGTERM, wait, then SIGKILL whatever is left.

    Only a group's root is told to stop while it lives: it stops its own workers (BentoML
    runs its cleanup); orphans are told directly.
    """
    everyone: list[psutil.Process] = []
    for root, members in groups:
        for process in [root] if root is not None else members:
            with contextlib.suppress(psutil.Error):
                process.terminate()
        everyone += [*([root] if root is not None else []), *members]
    left = wait_until_stopped(everyone, timeout)
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    wait_until_stopped(left, 5)


def wait_until_stopped(processes: list[psutil.Process], timeout: float) -> list[psutil.Process]:
    """Wait until every process has exited; return those still running after `timeout`.

    An exited process whose parent has not collected it yet (a zombie) has stopped: it
    serves nothing and holds no port. A version started by a process that lives on (a
    canary started by a test, say) stays a zombie until that process collects it, and
    waiting for it to vanish would wait the whole timeout and then kill the dead.
    """
    deadline = time.monotonic() + timeout
    while True:
        left = [process for process in processes if not stopped(process)]
        if not left or time.monotonic() >= deadline:
            return left
        time.sleep(0.1)


def stopped(process: psutil.Process) -> bool:
    """Exited, collected or not (a zombie is collected here when it is our child)."""
    try:
        if process.status() != psutil.STATUS_ZOMBIE:
            return False
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:  # not ours to read: it still counts as running
        return False
    reap(process.pid)
    return True


# --- the bento ----------------------------------------------------------------------------


def export_bento(release: str, store: Path, destination: Path) -> None:
    """Unpack bento `release` from the BentoML store `store` (model included) into a folder."""
    archive = destination.parent / "export.bento"  # absolute: bentoml resolves it from /
    env = {**os.environ, "BENTOML_HOME": str(store), "BENTOML_DO_NOT_TRACK": "true"}
    command = [sys.executable, "-m", "bentoml", "export", release, str(archive)]
    result = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not archive.is_file():
        raise Pr2prodError(
            f"cannot export the bento {release} from {store}:\n{result.stderr.strip()[-2000:]}",
            hint="build it with `make bento` (BENTOML_HOME must name the store it is in)",
        )
    with tarfile.open(archive) as bundle:
        bundle.extractall(destination, filter="data")
    archive.unlink()


# --- the target ---------------------------------------------------------------------------


class LocalTarget:
    """The DeployTarget protocol on this host, plus `up`, `down` and `status` for the Makefile."""

    name = "local"
    # A second `make deploy` beside a running one fails at once, naming the running one:
    # on one machine the person who started it is the one to ask.
    lock_wait_seconds = 0.0

    def __init__(
        self,
        state_dir: Path = DEFAULT_STATE_DIR,
        settings: CanarySettings | None = None,
        bento_store: Path | None = None,
        router_port: int | None = None,
        listen_timeout: float = 60.0,
        ready_timeout: float = 120.0,
        stop_timeout: float = 20.0,
    ) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.settings = settings or CanarySettings()
        # Where `make bento` put the bento: the same default as BentoML itself.
        home = Path(environment.BENTOML_HOME.value()).expanduser()
        self.bento_store = Path(bento_store or home).resolve()
        self.router_port = router_port  # when the router is (re)started; None: any free port
        self.listen_timeout = listen_timeout
        self.ready_timeout = ready_timeout
        self.stop_timeout = stop_timeout
        self._lock_depth = 0
        self._lock_handle: Any = None

    @property
    def state_file(self) -> Path:
        return self.state_dir / "state.json"

    # --- the DeployTarget protocol

    def running(self) -> dict[Role, Deployed]:
        state = self.load()
        found: dict[Role, Deployed] = {}
        for role, record in (("stable", state.stable), ("canary", state.canary)):
            if record and alive(record):
                found[role] = Deployed(record.release, record.url)
        return found

    def start_canary(self, release: str) -> Deployed:
        """Start `release` with no traffic; return once it listens (not once it is ready).

        Readiness is the caller's to check, with its own deadline. A canary of the same
        release that already runs (a controller re-run) is kept, with its weight set to 0.
        With no stable (a first deployment), the router is started if need be and the canary
        will get all traffic once its weight is above 0.
        """
        with self._exclusive():
            state = self._ensure_router(self._finish_retiring(self.load()))
            if state.stable and not alive(state.stable):
                state = self._retire(state, "stable", drain=False)
            if state.canary and alive(state.canary):
                if state.canary.release != release:
                    raise Pr2prodError(
                        f"a canary ({state.canary.release}) already runs",
                        hint="abort or promote it first",
                    )
                state = self._save(replace(state, canary_weight=0))
                self._sync_router(state)
                return Deployed(state.canary.release, state.canary.url)
            if state.canary:  # recorded but dead: clear what is left of it
                state = self._retire(state, "canary", drain=False)
            record = self._launch_version(release)
            state = self._save(replace(state, canary=record, canary_weight=0))
            try:
                wait_listening(record, self.listen_timeout)
            except Pr2prodError:
                self._retire(state, "canary", drain=False)
                raise
            self._sync_router(state)
            return Deployed(record.release, record.url)

    def set_canary_weight(self, percent: int, release: str) -> None:
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            raise Pr2prodError(f"the canary weight must be an integer 0-100, not {percent!r}")
        with self._exclusive():
            state = self.load()
            if state.canary is None:
                raise Pr2prodError("there is no canary to send traffic to")
            self._check_canary(state.canary, release)
            if percent and not alive(state.canary):
                raise Pr2prodError(
                    f"the canary {state.canary.release} (pid {state.canary.pid}) is not running",
                    hint="abort it and start it again",
                )
            state = self._save(replace(state, canary_weight=percent))
            self._sync_router(state)

    def promote(self, release: str) -> None:
        """All traffic to the canary, which becomes stable; the old stable drains, then stops.

        A stable that died meanwhile does not block this: the canary takes over all the same.
        """
        with self._exclusive():
            state = self._require_router(self._finish_retiring(self.load()))
            canary = state.canary
            if canary is None or not alive(canary):
                raise Pr2prodError("there is no running canary to promote")
            self._check_canary(canary, release)
            old = state.stable
            retiring = (*state.retiring, old) if old else state.retiring
            state = replace(state, stable=canary, canary=None, canary_weight=0, retiring=retiring)
            self._sync_router(self._save(state))
            if old and alive(old):  # requests it already has get to finish
                time.sleep(self.settings.drain_seconds)
            self._finish_retiring(state)

    def abort_canary(self, release: str) -> None:
        """The canary out of traffic at once, then drained and stopped; stable untouched."""
        with self._exclusive():
            state = self._finish_retiring(self.load())
            if state.canary is not None:
                self._check_canary(state.canary, release)
                self._retire(state, "canary", drain=True)

    def _check_canary(self, canary: VersionRecord, release: str) -> None:
        if canary.release != release:
            raise another_canary(canary.release, release, f"the local target ({self.state_dir})")

    @contextlib.contextmanager
    def locked(self, holder: str, wait_seconds: float | None = None) -> Iterator[None]:
        """The deployment lock, held for a whole rollout: an flock on `<state dir>/rollout.lock`
        (released by the kernel however its holder ends), which also says who holds it."""
        wait = self.lock_wait_seconds if wait_seconds is None else wait_seconds
        self.state_dir.mkdir(parents=True, exist_ok=True)
        path = self.state_dir / "rollout.lock"
        deadline = time.monotonic() + wait
        with path.open("a+") as handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        handle.seek(0)
                        raise lock_refusal(handle.read(), path) from None
                    time.sleep(min(0.5, max(deadline - time.monotonic(), 0.01)))
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps({"holder": holder, "since": time.time()}) + "\n")
            handle.flush()
            try:
                yield
            finally:
                handle.truncate(0)  # the file stays (others may wait on it); its holder goes

    def entry_url(self) -> str:
        router = self.load().router
        if router is None:
            raise Pr2prodError("nothing is deployed locally", hint="run `make up`")
        return router.url

    # --- lifecycle beyond the protocol

    def up(self, release: str) -> dict[str, Any]:
        """Router (if not running) and stable `release` (if no stable runs), ready to serve.

        A stable that runs already is kept whatever its release: changing versions is a
        rollout's job.
        """
        with self._exclusive():
            state = self._finish_retiring(self.load())
            state = self._ensure_router(state)
            if state.stable and not alive(state.stable):
                state = self._retire(state, "stable", drain=False)
            if state.stable is None:
                record = self._launch_version(release)
                state = self._save(replace(state, stable=record))
                running = Watched(record.release, lambda: alive(record), Path(record.log))
                try:
                    wait_until_ready(record.url, self.ready_timeout, process=running)
                except Pr2prodError:
                    self._retire(state, "stable", drain=False)
                    raise
            self._sync_router(state)
        return self.status()

    def down(self) -> dict[str, Any]:
        """Stop everything: the router first (it finishes requests in flight), then versions."""
        with self._exclusive():
            state = self.load()
            if state.router:
                root = own_process(state.router)
                stop_groups([(root, [])], self.stop_timeout)
            versions = [r for r in (state.stable, state.canary, *state.retiring) if r]
            stop_groups([version_processes(record) for record in versions], self.stop_timeout)
            for record in versions:
                remove_files(record)
            self.state_file.unlink(missing_ok=True)
        return {
            "stopped": {
                "router": state.router.pid if state.router else None,
                "versions": [f"{record.release} (pid {record.pid})" for record in versions],
            }
        }

    def status(self) -> dict[str, Any]:
        state = self.load()
        router = state.router
        router_alive = bool(router and alive(router))
        return {
            "state_dir": str(self.state_dir),
            "router": describe_router(router, router_alive) if router else None,
            "stable": describe_version(state.stable),
            "canary": describe_version(state.canary),
            "canary_weight": state.canary_weight if state.canary else 0,
            "retiring": [describe_version(record) for record in state.retiring],
            "stats": self.stats() if router_alive else None,
        }

    def stats(self) -> dict[str, Any] | None:
        """The router's counters (GET /-/stats), or None when it does not answer."""
        router = self.load().router
        if router is None:
            return None
        try:
            return router.admin("GET", "stats").json()
        except (httpx.HTTPError, ValueError):
            return None

    # --- state on disk

    def load(self) -> DeployState:
        if not self.state_file.is_file():
            return DeployState()
        return DeployState.from_json(self.state_file.read_text())

    def _save(self, state: DeployState) -> DeployState:
        # Readers (`make status`, another command) see the old file or the new, never half.
        write_atomically(self.state_file, state.to_json())
        return state

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One changing command at a time across processes (re-entrant within one)."""
        if self._lock_depth == 0:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            self._lock_handle = (self.state_dir / "lock").open("w")
            fcntl.flock(self._lock_handle, fcntl.LOCK_EX)
        self._lock_depth += 1
        try:
            yield
        finally:
            self._lock_depth -= 1
            if self._lock_depth == 0:
                self._lock_handle.close()  # closing releases the lock
                self._lock_handle = None

    # --- steps

    def _ensure_router(self, state: DeployState) -> DeployState:
        if state.router and alive(state.router):
            return state
        port, admin_port = self.router_port or free_port(), free_port()
        log = self.state_dir / "router.log"
        token = secrets.token_urlsafe(32)
        command = [sys.executable, "-m", ROUTER_MODULE, "--host", HOST, "--port", str(port)]
        command += ["--admin-port", str(admin_port)]
        env = {**os.environ, environment.PR2PROD_ROUTER_TOKEN.name: token}
        pid = spawn(command, log, env, self.state_dir)
        url = f"http://{HOST}:{port}"
        record = RouterRecord(pid, port, url, str(log), admin_port, token)
        state = self._save(replace(state, router=record))
        try:
            wait_listening(record, self.listen_timeout)
        except Pr2prodError:
            stop_groups([(own_process(record), [])], self.stop_timeout)
            self._save(replace(state, router=None))
            raise
        return state

    def _launch_version(self, release: str) -> VersionRecord:
        """Export the bento and start serving it; returns at once (the caller records it)."""
        versions = self.state_dir / "versions"
        versions.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix=f"{release.rpartition(':')[2]}-", dir=versions))
        home, log = folder / "home", folder / "serve.log"
        home.mkdir()
        try:
            export_bento(release, self.bento_store, folder / "bento")
        except Pr2prodError:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        port = free_port()  # chosen last: the shorter the gap, the less another can take it
        env = {**os.environ, "BENTOML_HOME": str(home), "BENTOML_DO_NOT_TRACK": "true"}
        command = [sys.executable, "-m", "bentoml", "serve", str(folder / "bento")]
        pid = spawn([*command, "--host", HOST, "--port", str(port)], log, env, folder)
        url = f"http://{HOST}:{port}"
        return VersionRecord(release, pid, port, url, str(home), str(folder), str(log))

    def _retire(self, state: DeployState, role: Role, drain: bool) -> DeployState:
        """Take `role` out of traffic, wait `drain_seconds` if asked, stop it, forget it."""
        record = state.canary if role == "canary" else state.stable
        if record is None:
            return state
        if role == "canary":
            state = replace(state, canary=None, canary_weight=0)
        else:
            state = replace(state, stable=None)
        state = replace(state, retiring=(*state.retiring, record))
        self._sync_router(self._save(state), required=False)
        if drain and alive(record):
            time.sleep(self.settings.drain_seconds)
        return self._finish_retiring(state)

    def _finish_retiring(self, state: DeployState) -> DeployState:
        if not state.retiring:
            return state
        stop_groups([version_processes(record) for record in state.retiring], self.stop_timeout)
        for record in state.retiring:
            remove_files(record)
        return self._save(replace(state, retiring=()))

    def _require_router(self, state: DeployState) -> DeployState:
        if state.router is None or not alive(state.router):
            raise Pr2prodError("the local router is not running", hint="run `make up`")
        return state

    def _sync_router(self, state: DeployState, required: bool = True) -> None:
        """Tell the router what the state says (the router keeps backends in memory only)."""
        if state.router is None:
            return
        config = routing(state, self.settings.retry_on_stable)
        try:
            if config is None:
                response = state.router.admin("DELETE", "backends")
            else:
                response = state.router.admin("PUT", "backends", json=config)
        except httpx.HTTPError as error:
            if not required:
                return
            raise Pr2prodError(
                f"the router at {state.router.url} does not answer: {error}",
                hint="`make up` restarts it with the recorded versions",
            ) from error
        if response.status_code != 200:
            raise Pr2prodError(f"the router refused {config}: {response.text}")


def lock_refusal(written: str, path: Path) -> Pr2prodError:
    """The error of a rollout that found the lock held, naming the holder it wrote."""
    try:
        held = json.loads(written)
        since = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(held["since"])))
        holder = f"{held['holder']} since {since}"
    except (ValueError, KeyError, TypeError):
        holder = "a process that is just starting or ending"
    return Pr2prodError(
        f"another rollout is running: the deployment is locked by {holder} ({path})",
        hint="wait for it to finish (`make deploy-status` shows what runs), or stop it; "
        "the lock goes with its process",
    )


def describe_router(router: RouterRecord, alive: bool) -> dict[str, Any]:
    described = {key: value for key, value in asdict(router).items() if key != "token"}
    return {**described, "alive": alive}


def routing(state: DeployState, retry_on_stable: bool) -> dict[str, Any] | None:
    """The router's backends for `state`; None: nothing may get traffic."""
    stable, canary = state.stable, state.canary
    weight = state.canary_weight if canary else 0
    if stable is None:
        # A first deployment: the only version gets everything once it may get anything.
        if canary is None or weight == 0:
            return None
        return {"stable": canary.url, "canary": None, "canary_weight": 0}
    return {
        "stable": stable.url,
        "canary": canary.url if canary else None,
        "canary_weight": weight,
        "retry_on_stable": retry_on_stable,
    }


def remove_files(record: VersionRecord) -> None:
    """The unpacked bento and BENTOML_HOME go; the log stays for whoever investigates."""
    for folder in (record.bento, Path(record.home)):
        shutil.rmtree(folder, ignore_errors=True)


def describe_version(record: VersionRecord | None) -> dict[str, Any] | None:
    if record is None:
        return None
    return {**asdict(record), "alive": alive(record)}


def format_status(status: dict[str, Any]) -> str:
    """`make status`: one line per component, then the router's counters."""
    router = status["router"]
    if router is None:
        return f"nothing deployed (state in {status['state_dir']})"
    lines = [f"router   {router['url']}  pid {router['pid']}  {liveness(router)}"]
    for role in ("stable", "canary"):
        version = status[role]
        if version is None:
            lines.append(f"{role:<8} -")
            continue
        share = status["canary_weight"] if role == "canary" else 100 - status["canary_weight"]
        lines.append(
            f"{role:<8} {version['release']}  {version['url']}  pid {version['pid']}  "
            f"{share}% of traffic  {liveness(version)}  log {version['log']}"
        )
    lines += [
        f"retiring {version['release']}  pid {version['pid']}" for version in status["retiring"]
    ]
    stats = status.get("stats")
    if stats:
        for role in ("stable", "canary"):
            counts = ", ".join(f"{name} {value}" for name, value in stats[role].items())
            lines.append(f"{role:<8} router counters: {counts}")
    return "\n".join(lines)


def liveness(record: dict[str, Any]) -> str:
    return "running" if record["alive"] else "NOT RUNNING"
