"""The local target's router: one entry point that splits traffic between stable and canary.

Run as `python -m pr2prod.deploy.router --port N --admin-port M` with the admin token in
PR2PROD_ROUTER_TOKEN. It listens twice: clients' traffic on N, where every request is
proxied, and its admin API on M, on the loopback interface only, where each request must
carry `Authorization: Bearer <token>` and a loopback Host (a web page the user visits cannot
reach it through DNS rebinding). It starts with no backends; `PUT /-/backends` tells it
where stable and canary are and the canary's share. The admin API:

    PUT /-/backends  {"stable": url, "canary": url | null, "canary_weight": 0-100,
                      "retry_on_stable": bool}
    GET /-/backends  the configuration in force (null: none)
    DELETE /-/backends  forget the backends: proxied requests get 503 until the next PUT
    GET /-/stats     counters per role (see RoleStats)
    GET /-/healthz   200 while the router runs

Backends must be on one of the allowed hosts (loopback unless `--backend-host` says more):
whoever holds the token can repoint traffic, but not at a cloud metadata address.

Every traffic request is forwarded (method, path, query, body, end-to-end headers; the
client's own forwarding headers are replaced, not passed on) and the backend's answer is
returned as it came, plus an `x-pr2prod-backend` header naming the role that answered.
A connection that has not sent a whole request head within the header timeout is closed,
so idle or trickling connections cannot tie the router up. The split is deterministic (see
SmoothSplit), so tests can assert exact shares.
A canary that refuses a connection (its process is gone) gets no more requests until the
next `PUT /-/backends`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import hmac
import json
import sys
from collections.abc import AsyncIterator, Iterable
from dataclasses import asdict, dataclass, field
from typing import Any
from urllib.parse import urlsplit

import h11
import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from uvicorn.protocols.http.h11_impl import H11Protocol

from pr2prod import environment
from pr2prod.deploy.target import BACKEND_HEADER, Role

ROLES: tuple[Role, ...] = ("stable", "canary")

# Headers that describe one connection, not the message: a proxy must not forward them.
HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# The service itself answers within its own 30 s traffic timeout; connecting is local, so a
# backend that does not accept within 2 s is as good as down (and the canary gets retried).
TIMEOUT = httpx.Timeout(connect=2.0, read=35.0, write=10.0, pool=5.0)
# Bounded everywhere: at most this many upstream connections (a request waiting longer than
# the pool timeout for one fails), and the router answers 503 above LIMIT_CONCURRENCY requests
# in flight (requests, not connections: idle connections cost nothing but a socket).
# Idle upstream connections are dropped after 2 s, well before the backends' own keep-alive
# timeout (uvicorn's 5 s): reusing a connection the backend is closing at that moment
# fails the request with a 502 that no backend caused.
POOL = httpx.Limits(max_connections=200, max_keepalive_connections=50, keepalive_expiry=2.0)
LIMIT_CONCURRENCY = 400
MAX_BODY_BYTES = 4 * 1024 * 1024  # above the service's own limit, so it can answer 413 itself
PROXIED_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
# A client has this long from connecting (or from its first byte after an idle keep-alive)
# to send a whole request head.
HEADER_TIMEOUT = 10.0
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Set by the client, they would claim an address the router never saw: replaced, not kept.
CLIENT_FORWARDING_HEADERS = frozenset(
    {b"forwarded", b"x-forwarded-for", b"x-forwarded-host", b"x-forwarded-proto", b"x-real-ip"}
)


class InvalidBackends(ValueError):
    """A `PUT /-/backends` body the router refuses (answered with 400)."""


@dataclass(frozen=True)
class Backends:
    stable: str
    canary: str | None = None
    canary_weight: int = 0
    retry_on_stable: bool = True


def parse_backends(raw: object, allowed_hosts: Iterable[str] = LOOPBACK_HOSTS) -> Backends:
    """Validate a `PUT /-/backends` body; InvalidBackends says what is wrong."""
    allowed = tuple(allowed_hosts)
    if not isinstance(raw, dict):
        raise InvalidBackends("the body must be a JSON object")
    unknown = set(raw) - {"stable", "canary", "canary_weight", "retry_on_stable"}
    if unknown:
        raise InvalidBackends(f"unknown keys: {sorted(unknown)}")
    if raw.get("stable") is None:
        raise InvalidBackends("stable is required")
    stable = parse_backend_url(raw["stable"], "stable", allowed)
    canary = raw.get("canary")
    canary = None if canary is None else parse_backend_url(canary, "canary", allowed)
    weight = raw.get("canary_weight", 0)
    # bool is an int in Python, but `true` is not a percentage.
    if isinstance(weight, bool) or not isinstance(weight, int) or not 0 <= weight <= 100:
        raise InvalidBackends("canary_weight must be an integer from 0 to 100")
    if canary is None and weight != 0:
        raise InvalidBackends("canary_weight must be 0 when there is no canary")
    retry = raw.get("retry_on_stable", True)
    if not isinstance(retry, bool):
        raise InvalidBackends("retry_on_stable must be true or false")
    return Backends(stable, canary, weight, retry)


def parse_backend_url(value: object, name: str, allowed_hosts: tuple[str, ...]) -> str:
    """An http(s) base URL on an allowed host, with a port and nothing after it."""
    if not isinstance(value, str):
        raise InvalidBackends(f"{name} must be a URL string")
    parts = urlsplit(value)
    try:
        port = parts.port
    except ValueError as error:
        raise InvalidBackends(f"{name}: {error}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname or port is None:
        raise InvalidBackends(f"{name} must look like http://host:port, not {value!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise InvalidBackends(f"{name} must not have a path, query or fragment: {value!r}")
    if parts.hostname not in allowed_hosts:
        raise InvalidBackends(
            f"{name}: the router forwards only to {', '.join(allowed_hosts)}, "
            f"not {parts.hostname} (start it with --backend-host to allow another host)"
        )
    return f"{parts.scheme}://{parts.netloc}"


class SmoothSplit:
    """Which role gets the next request: the canary gets exactly `weight` of every 100.

    An accumulator instead of random choice: each request adds `weight` credit and the
    canary is chosen whenever the credit reaches 100. Credit stays in [0, 100), so any 100
    consecutive requests give the canary exactly `weight` of them, evenly spread.
    """

    def __init__(self, weight: int = 0) -> None:
        self.credit = 0
        self.weight = weight

    @property
    def weight(self) -> int:
        return self._weight

    @weight.setter
    def weight(self, percent: int) -> None:
        if not 0 <= percent <= 100:
            raise ValueError(f"weight must be 0-100, not {percent}")
        self._weight = percent

    def next_role(self) -> Role:
        self.credit += self.weight
        if self.credit >= 100:
            self.credit -= 100
            return "canary"
        return "stable"


@dataclass
class RoleStats:
    routed: int = 0  # requests the split gave this role first (the share)
    requests: int = 0  # requests sent to this role's backend (retries on stable included)
    responses_5xx: int = 0  # 5xx answers from the backend
    connection_errors: int = 0  # refused, reset or timed out: no answer from the backend
    retried_on_stable: int = 0  # this role's failures resent to stable
    client_failures: int = 0  # requests routed here whose final answer to the client was 5xx


@dataclass
class Answer:
    role: Role
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    reached_backend: bool = True  # False: the router made this answer (connection failure)
    refused: bool = False  # the backend could not even be connected to: it is not running

    @property
    def failed(self) -> bool:
        return self.status >= 500


@dataclass
class RouterState:
    backends: Backends | None = None
    split: SmoothSplit = field(default_factory=SmoothSplit)
    stats: dict[Role, RoleStats] = field(
        default_factory=lambda: {role: RoleStats() for role in ROLES}
    )
    allowed_hosts: tuple[str, ...] = LOOPBACK_HOSTS
    in_flight: int = 0  # proxied requests not yet answered

    # A canary that refused a connection is not running: its share goes to stable until the
    # next configuration (the controller, seeing it gone, rolls back). Timeouts and 5xx
    # answers do not eject: judging those is the canary analysis's job.
    canary_ejected: bool = False

    def configure(self, backends: Backends | None) -> None:
        # The credit is kept: shares stay exact across weight changes.
        self.backends = backends
        self.split.weight = backends.canary_weight if backends else 0
        self.canary_ejected = False

    def choose(self, backends: Backends) -> Role:
        role = self.split.next_role()
        wanted = role == "canary" and backends.canary and not self.canary_ejected
        return "canary" if wanted else "stable"

    def stats_dict(self) -> dict[str, Any]:
        roles = {role: asdict(stats) for role, stats in self.stats.items()}
        return {
            **roles,
            "requests": sum(stats.routed for stats in self.stats.values()),
            "client_failures": sum(stats.client_failures for stats in self.stats.values()),
            "canary_ejected": self.canary_ejected,
        }


def forwarded_headers(raw: Iterable[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """End-to-end headers only: hop-by-hop ones, and any the Connection header names, go."""
    headers = list(raw)
    named = {
        token.strip().lower()
        for name, value in headers
        if name.lower() == b"connection"
        for token in value.split(b",")
    }
    return [
        (name, value)
        for name, value in headers
        if name.lower().decode("latin-1") not in HOP_BY_HOP and name.lower() not in named
    ]


def request_headers(request: Request) -> list[tuple[bytes, bytes]]:
    # httpx sets Host and Content-Length for the upstream request itself.
    kept = [
        (name, value)
        for name, value in forwarded_headers(request.headers.raw)
        if name.lower() not in (b"host", b"content-length")
    ]
    kept = [(name, value) for name, value in kept if name.lower() not in CLIENT_FORWARDING_HEADERS]
    if request.client:
        kept.append((b"x-forwarded-for", request.client.host.encode()))
    return kept


def upstream_url(base: str, request: Request) -> httpx.URL:
    # raw_path keeps the client's percent-encoding exactly as sent.
    raw_path = request.scope.get("raw_path") or request.url.path.encode()
    query = request.scope.get("query_string", b"")
    return httpx.URL(base).copy_with(raw_path=raw_path + (b"?" + query if query else b""))


async def send(
    client: httpx.AsyncClient, role: Role, base: str, request: Request, body: bytes
) -> Answer:
    """One attempt at one backend; a connection failure becomes a router-made 502/504."""
    upstream = client.build_request(
        request.method, upstream_url(base, request), headers=request_headers(request), content=body
    )
    try:
        response = await client.send(upstream, stream=True)
        try:
            # Raw bytes: the body is passed on still encoded, matching its headers.
            content = b"".join([chunk async for chunk in response.aiter_raw()])
        finally:
            await response.aclose()
    except httpx.TimeoutException as error:
        return router_answer(role, 504, f"{role} backend timed out: {type(error).__name__}")
    except httpx.ConnectError as error:
        answer = router_answer(role, 502, f"{role} backend refused: {type(error).__name__}")
        return dataclasses.replace(answer, refused=True)
    except httpx.TransportError as error:
        return router_answer(role, 502, f"{role} backend unreachable: {type(error).__name__}")
    return Answer(role, response.status_code, forwarded_headers(response.headers.raw), content)


def router_answer(role: Role, status: int, message: str) -> Answer:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json")]
    return Answer(role, status, headers, body, reached_backend=False)


def count_attempt(stats: RoleStats, answer: Answer) -> None:
    stats.requests += 1
    if not answer.reached_backend:
        stats.connection_errors += 1
    elif answer.failed:
        stats.responses_5xx += 1


def to_response(answer: Answer, method: str) -> Response:
    response = Response(content=answer.body, status_code=answer.status)
    headers = [(n, v) for n, v in answer.headers if n.lower() != b"content-length"]
    # HEAD answers carry the length the GET body would have; keep the backend's then.
    length = next((v for n, v in answer.headers if n.lower() == b"content-length"), None)
    if method != "HEAD" or length is None:
        length = str(len(answer.body)).encode()
    headers += [(b"content-length", length), (BACKEND_HEADER.encode(), answer.role.encode())]
    response.raw_headers = headers  # raw: repeated headers (set-cookie) survive
    return response


async def read_body(request: Request, limit: int = MAX_BODY_BYTES) -> bytes | None:
    """The whole body (kept, so a failed canary attempt can be resent); None above `limit`."""
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def proxy(request: Request) -> Response:
    state: RouterState = request.app.state.router
    if state.in_flight >= LIMIT_CONCURRENCY:
        return JSONResponse({"error": "the router is at capacity; retry shortly"}, 503)
    state.in_flight += 1
    try:
        return await forward(request, state)
    finally:
        state.in_flight -= 1


async def forward(request: Request, state: RouterState) -> Response:
    client: httpx.AsyncClient = request.app.state.client
    backends = state.backends  # one snapshot: a PUT during this request does not mix configs
    if backends is None:
        return JSONResponse({"error": "no backends configured: PUT /-/backends"}, 503)
    body = await read_body(request)
    if body is None:
        return JSONResponse({"error": f"request body above {MAX_BODY_BYTES} bytes"}, 413)
    role = state.choose(backends)
    state.stats[role].routed += 1
    base = backends.canary if role == "canary" and backends.canary else backends.stable
    answer = await send(client, role, base, request, body)
    count_attempt(state.stats[role], answer)
    if role == "canary" and answer.refused:
        state.canary_ejected = True
    # Resending a POST is safe here: predictions have no side effects.
    if role == "canary" and answer.failed and backends.retry_on_stable:
        state.stats["canary"].retried_on_stable += 1
        answer = await send(client, "stable", backends.stable, request, body)
        count_attempt(state.stats["stable"], answer)
    if answer.failed:
        state.stats[role].client_failures += 1
    return to_response(answer, request.method)


async def put_backends(request: Request) -> Response:
    try:
        state: RouterState = request.app.state.router
        backends = parse_backends(json.loads(await request.body()), state.allowed_hosts)
    except json.JSONDecodeError as error:
        return JSONResponse({"error": f"the body is not JSON: {error}"}, 400)
    except InvalidBackends as error:
        return JSONResponse({"error": str(error)}, 400)
    request.app.state.router.configure(backends)
    return JSONResponse(asdict(backends))


async def delete_backends(request: Request) -> Response:
    request.app.state.router.configure(None)
    return JSONResponse(None)


async def get_backends(request: Request) -> Response:
    backends = request.app.state.router.backends
    return JSONResponse(asdict(backends) if backends else None)


async def get_stats(request: Request) -> Response:
    return JSONResponse(request.app.state.router.stats_dict())


async def healthz(request: Request) -> Response:
    configured = request.app.state.router.backends is not None
    return JSONResponse({"status": "ok", "configured": configured})


async def unknown_admin(request: Request) -> Response:
    return JSONResponse({"error": f"no admin endpoint {request.url.path}"}, 404)


class AdminGuard(BaseHTTPMiddleware):
    """Admin requests need the token (but the health probe) and a loopback Host header."""

    def __init__(self, app: Any, token: str) -> None:
        super().__init__(app)
        self.token = token.encode()

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        host = request.url.hostname or ""
        if host not in LOOPBACK_HOSTS:
            # A browser tricked by DNS rebinding sends the attacker's host name here.
            return JSONResponse({"error": f"admin API: host {host!r} is not loopback"}, 403)
        if request.url.path == "/-/healthz" and request.method == "GET":
            return await call_next(request)  # probes carry no token; it tells nothing secret
        scheme, _, given = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.encode(), self.token):
            return JSONResponse({"error": "admin API: missing or wrong bearer token"}, 401)
        return await call_next(request)


def create_apps(
    token: str,
    allowed_hosts: Iterable[str] = LOOPBACK_HOSTS,
    transport: httpx.AsyncBaseTransport | None = None,
) -> tuple[Starlette, Starlette]:
    """The traffic app and the admin app, sharing one state; `transport` replaces the network."""
    if not token:
        raise ValueError("the admin API needs a token")
    state = RouterState(allowed_hosts=tuple(allowed_hosts))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # One client for the router's lifetime: connections to the backends are pooled.
        async with httpx.AsyncClient(
            timeout=TIMEOUT, limits=POOL, transport=transport, follow_redirects=False
        ) as client:
            app.state.client = client
            yield

    traffic = Starlette(
        routes=[Route("/{path:path}", proxy, methods=PROXIED_METHODS)], lifespan=lifespan
    )
    admin_routes = [
        Route("/-/backends", put_backends, methods=["PUT"]),
        Route("/-/backends", get_backends, methods=["GET"]),
        Route("/-/backends", delete_backends, methods=["DELETE"]),
        Route("/-/stats", get_stats, methods=["GET"]),
        Route("/-/healthz", healthz, methods=["GET"]),
        Route("/{rest:path}", unknown_admin, methods=PROXIED_METHODS),
    ]
    admin = Starlette(routes=admin_routes, middleware=[Middleware(AdminGuard, token=token)])
    traffic.state.router = admin.state.router = state
    return traffic, admin


class HeaderDeadline(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing connections whose request head comes too slowly.

    uvicorn times out idle keep-alive connections but not a new connection that sends
    nothing, nor one that trickles a request head byte by byte: enough of those and every
    request waits. The deadline starts when a connection opens, and again when bytes of a
    next request start arriving; a complete request head stops it.
    """

    header_timeout = HEADER_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._deadline is None:
            self._arm()

    def handle_events(self) -> None:
        super().handle_events()
        if self.conn.their_state is not h11.IDLE:  # a whole request head has arrived
            self._disarm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self.conn.their_state is h11.IDLE:
            self._deadline = self.loop.call_later(self.header_timeout, self._expire)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _expire(self) -> None:
        self._deadline = None
        if self.conn.their_state is h11.IDLE and not self.transport.is_closing():
            self.transport.close()


class AdminServer(uvicorn.Server):
    """The admin listener: the traffic server owns the signals and stops this one after it."""

    @contextlib.contextmanager
    def capture_signals(self) -> Any:
        yield


async def serve(traffic: uvicorn.Server, admin: AdminServer) -> None:
    admin_task = asyncio.create_task(admin.serve())
    try:
        await traffic.serve()
    finally:
        admin.should_exit = True
        await admin_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="where traffic is accepted")
    parser.add_argument("--port", type=int, required=True, help="the traffic port")
    parser.add_argument("--admin-port", type=int, required=True, help="the admin API's port")
    parser.add_argument(
        "--backend-host",
        action="append",
        default=[],
        help="a host backends may be on, besides loopback (repeatable)",
    )
    parser.add_argument("--header-timeout", type=float, default=HEADER_TIMEOUT)
    parser.add_argument("--log-level", default="info")
    args = parser.parse_args(argv)
    token = environment.PR2PROD_ROUTER_TOKEN.value()
    if not token:
        sys.exit(f"set {environment.PR2PROD_ROUTER_TOKEN.name} to the admin API's token")
    traffic_app, admin_app = create_apps(token, [*LOOPBACK_HOSTS, *args.backend_host])
    # A subclass per deadline: uvicorn takes a protocol class, not an instance.
    protocol = type("HeaderDeadline", (HeaderDeadline,), {"header_timeout": args.header_timeout})
    traffic = uvicorn.Server(
        uvicorn.Config(
            traffic_app,
            host=args.host,
            port=args.port,
            http=protocol,
            log_level=args.log_level,
            access_log=False,  # per-request lines would dwarf the log; /-/stats counts instead
            # The backend's own Server and Date headers pass through; no second copy.
            server_header=False,
            date_header=False,
            # SIGTERM: stop accepting, let in-flight requests finish (the drain), then exit.
            timeout_graceful_shutdown=10,
            # Longer than clients keep idle connections (httpx: 5 s), for the same race as POOL.
            timeout_keep_alive=15,
        )
    )
    admin = AdminServer(
        uvicorn.Config(
            admin_app,
            host="127.0.0.1",
            port=args.admin_port,
            http=protocol,
            log_level=args.log_level,
            access_log=False,
        )
    )
    asyncio.run(serve(traffic, admin))


if __name__ == "__main__":
    main()
