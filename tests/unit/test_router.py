"""The router's arithmetic and rules, in process: the split, backend validation, retries."""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
import pytest

from pr2prod.deploy.router import (
    Backends,
    InvalidBackends,
    SmoothSplit,
    create_apps,
    forwarded_headers,
    parse_backends,
)

T = TypeVar("T")
STABLE, CANARY = "http://stable.test:3001", "http://canary.test:3002"
HOSTS = ("stable.test", "canary.test")  # the hosts these tests allow backends on
TOKEN = "test-token"


@pytest.mark.parametrize("weight", [0, 10, 25, 50, 100])
def test_the_canary_gets_exactly_its_weight_of_every_100_requests(weight: int) -> None:
    split = SmoothSplit(weight)

    roles = [split.next_role() for _ in range(300)]

    assert Counter(roles[:100])["canary"] == weight
    # Any 100 in a row, not only the first: the share holds wherever a window starts.
    for start in range(201):
        assert roles[start : start + 100].count("canary") == weight


def test_canary_requests_are_spread_evenly_not_bunched() -> None:
    split = SmoothSplit(25)

    roles = [split.next_role() for _ in range(20)]

    assert [i for i, role in enumerate(roles) if role == "canary"] == [3, 7, 11, 15, 19]


def test_a_weight_change_keeps_shares_exact() -> None:
    split = SmoothSplit(30)
    [split.next_role() for _ in range(7)]  # leave some credit behind

    split.weight = 60
    roles = [split.next_role() for _ in range(100)]

    assert roles.count("canary") in (60, 61)  # the credit left over is worth < 1 request
    with pytest.raises(ValueError):
        split.weight = 101


def test_valid_backends_get_defaults_and_normalised_urls() -> None:
    assert parse_backends({"stable": "http://127.0.0.1:3000/"}) == Backends(
        stable="http://127.0.0.1:3000", canary=None, canary_weight=0, retry_on_stable=True
    )
    body = {"stable": STABLE, "canary": CANARY, "canary_weight": 10, "retry_on_stable": False}
    assert parse_backends(body, HOSTS) == Backends(STABLE, CANARY, 10, False)


@pytest.mark.parametrize(
    ("body", "complaint"),
    [
        ([STABLE], "JSON object"),
        ({}, "stable is required"),
        ({"stable": STABLE, "weight": 5}, "unknown keys"),
        ({"stable": "ftp://host:21"}, "http://host:port"),
        ({"stable": "http://host"}, "http://host:port"),
        ({"stable": "http://host:99999"}, "stable"),
        ({"stable": f"{STABLE}/prefix"}, "path"),
        ({"stable": STABLE, "canary": 3002}, "URL string"),
        ({"stable": STABLE, "canary": CANARY, "canary_weight": 101}, "0 to 100"),
        ({"stable": STABLE, "canary": CANARY, "canary_weight": -1}, "0 to 100"),
        ({"stable": STABLE, "canary": CANARY, "canary_weight": "10"}, "0 to 100"),
        ({"stable": STABLE, "canary": CANARY, "canary_weight": 10.5}, "0 to 100"),
        ({"stable": STABLE, "canary": CANARY, "canary_weight": True}, "0 to 100"),
        ({"stable": STABLE, "canary_weight": 10}, "no canary"),
        ({"stable": STABLE, "retry_on_stable": "yes"}, "true or false"),
        ({"stable": "http://elsewhere.test:80"}, "forwards only to stable.test, canary.test"),
    ],
)
def test_invalid_backends_are_refused_with_a_reason(body: object, complaint: str) -> None:
    with pytest.raises(InvalidBackends, match=complaint):
        parse_backends(body, HOSTS)


@pytest.mark.parametrize(
    "url", ["http://169.254.169.254:80", "http://10.0.0.1:3000", "http://stable.test:3001"]
)
def test_backends_off_the_allowed_hosts_are_refused(url: str) -> None:
    """Whoever reaches the admin API must not repoint traffic at a metadata service."""
    with pytest.raises(InvalidBackends, match=r"forwards only to 127\.0\.0\.1, localhost"):
        parse_backends({"stable": url})


def test_hop_by_hop_headers_and_those_connection_names_are_dropped() -> None:
    headers = [
        (b"Connection", b"keep-alive, X-Private"),
        (b"X-Private", b"1"),
        (b"Transfer-Encoding", b"chunked"),
        (b"Set-Cookie", b"a=1"),
        (b"Set-Cookie", b"b=2"),
    ]

    assert forwarded_headers(headers) == [(b"Set-Cookie", b"a=1"), (b"Set-Cookie", b"b=2")]


# --- the app in process: ASGI in, httpx.MockTransport instead of the network

Handler = Callable[[httpx.Request], httpx.Response]


@dataclass
class Clients:
    traffic: httpx.AsyncClient  # the port clients send requests to
    admin: httpx.AsyncClient  # the admin API's port, with the token


Scenario = Callable[[Clients], Awaitable[T]]


def backend(canary_status: int | None) -> Handler:
    """Stable answers 200; the canary answers `canary_status`, or refuses (None)."""

    def handle(request: httpx.Request) -> httpx.Response:
        if request.url.host == "canary.test":
            if canary_status is None:
                raise httpx.ConnectError("connection refused", request=request)
            return streamed(canary_status, b"canary")
        return streamed(200, b"stable", {"x-seen-path": request.url.raw_path.decode()})

    return handle


def streamed(status: int, body: bytes, headers: dict[str, str] | None = None) -> httpx.Response:
    # Not yet read, as from a real connection: the router streams the raw body itself.
    return httpx.Response(status, headers=headers, stream=httpx.ByteStream(body))


def with_router(handler: Handler, config: dict[str, Any] | None, scenario: Scenario[T]) -> T:
    """Run `scenario` against a router (lifespan included) configured with `config`."""

    async def main() -> T:
        traffic, admin = create_apps(TOKEN, HOSTS, httpx.MockTransport(handler))
        async with traffic.router.lifespan_context(traffic), contextlib.AsyncExitStack() as stack:
            clients = Clients(
                *[
                    await stack.enter_async_context(
                        httpx.AsyncClient(transport=httpx.ASGITransport(app), base_url=base)
                    )
                    for app, base in ((traffic, "http://r.test"), (admin, "http://127.0.0.1"))
                ]
            )
            clients.admin.headers["authorization"] = f"Bearer {TOKEN}"
            if config is not None:
                response = await clients.admin.put("/-/backends", json={"stable": STABLE, **config})
                assert response.status_code == 200, response.text
            return await scenario(clients)

    return asyncio.run(main())


async def stats(router: Clients) -> dict[str, Any]:
    return (await router.admin.get("/-/stats")).json()


@pytest.mark.parametrize("canary_status", [500, 503])
def test_retry_on_stable_hides_canary_failures_and_counts_them(canary_status: int) -> None:
    async def scenario(router: Clients) -> tuple[list[httpx.Response], dict]:
        answers = [await router.traffic.post("/predict", content=b"{}") for _ in range(100)]
        return answers, await stats(router)

    config = {"canary": CANARY, "canary_weight": 50, "retry_on_stable": True}
    answers, counts = with_router(backend(canary_status), config, scenario)

    assert {(a.status_code, a.text, a.headers["x-pr2prod-backend"]) for a in answers} == {
        (200, "stable", "stable")
    }
    assert counts["canary"]["routed"] == counts["canary"]["retried_on_stable"] == 50
    assert counts["canary"]["responses_5xx"] == 50
    assert counts["stable"]["requests"] == 100  # 50 routed there, 50 retried there
    assert counts["client_failures"] == 0


def test_without_retry_canary_failures_reach_the_client() -> None:
    async def scenario(router: Clients) -> tuple[Counter[int], dict]:
        statuses = Counter([(await router.traffic.get("/")).status_code for _ in range(100)])
        return statuses, await stats(router)

    config = {"canary": CANARY, "canary_weight": 10, "retry_on_stable": False}
    statuses, counts = with_router(backend(500), config, scenario)

    assert statuses == {200: 90, 500: 10}
    assert counts["canary"]["client_failures"] == counts["client_failures"] == 10
    assert counts["canary"]["retried_on_stable"] == 0


@pytest.mark.parametrize("retry", [True, False])
def test_a_canary_that_refuses_connections_gets_no_more_traffic_until_reconfigured(
    retry: bool,
) -> None:
    async def scenario(router: Clients) -> tuple[Counter[int], dict, dict]:
        statuses = Counter([(await router.traffic.post("/predict", content=b"{}")).status_code
                            for _ in range(100)])  # fmt: skip
        ejected = await stats(router)
        config = {"stable": STABLE, "canary": CANARY, "canary_weight": 50}
        await router.admin.put("/-/backends", json=config)  # the controller's next word
        await router.traffic.post("/predict", content=b"{}")
        await router.traffic.post("/predict", content=b"{}")
        return statuses, ejected, await stats(router)

    config = {"canary": CANARY, "canary_weight": 10, "retry_on_stable": retry}
    statuses, ejected, reconfigured = with_router(backend(None), config, scenario)

    # One request found the canary gone; every later one went to stable.
    assert ejected["canary"]["routed"] == ejected["canary"]["connection_errors"] == 1
    assert ejected["canary_ejected"] is True
    assert statuses == ({200: 100} if retry else {200: 99, 502: 1})
    # Reconfigured, the canary is tried again (and, still refusing, ejected again).
    assert reconfigured["canary"]["routed"] == reconfigured["canary"]["connection_errors"] == 2


def test_the_admin_api_answers_on_its_own_port_only_and_bad_configs_are_400() -> None:
    async def scenario(router: Clients) -> None:
        assert (await router.traffic.get("/anything")).status_code == 503  # no backends yet
        assert (await router.admin.get("/-/healthz")).json() == {
            "status": "ok",
            "configured": False,
        }
        assert (await router.admin.put("/-/backends", content=b"not json")).status_code == 400
        refused = await router.admin.put("/-/backends", json={"stable": STABLE, "canary_weight": 5})
        assert refused.status_code == 400 and "no canary" in refused.json()["error"]
        body = {"stable": STABLE, "canary": CANARY, "canary_weight": 5}
        assert (await router.admin.put("/-/backends", json=body)).status_code == 200
        assert (await router.admin.get("/-/backends")).json()["canary_weight"] == 5
        assert (await router.admin.get("/-/nothing")).status_code == 404
        assert (await router.admin.delete("/-/backends")).status_code == 200
        assert (await router.admin.get("/-/backends")).json() is None
        assert (await router.traffic.get("/anything")).status_code == 503
        # On the traffic port, /-/ is just a path: proxied (here: no backends), never obeyed.
        assert (await router.traffic.put("/-/backends", json=body)).status_code == 503
        assert (await router.admin.get("/-/backends")).json() is None

    with_router(backend(200), None, scenario)


@pytest.mark.parametrize(
    ("base", "authorization", "status"),
    [
        ("http://127.0.0.1", None, 401),
        ("http://127.0.0.1", "Bearer wrong-token", 401),
        ("http://127.0.0.1", f"Basic {TOKEN}", 401),
        # DNS rebinding: a page on attacker.test whose name now resolves to 127.0.0.1.
        ("http://attacker.test", f"Bearer {TOKEN}", 403),
        ("http://localhost", f"Bearer {TOKEN}", 200),
    ],
)
def test_the_admin_api_wants_the_token_and_a_loopback_host(
    base: str, authorization: str | None, status: int
) -> None:
    async def main() -> tuple[int, int, object]:
        _, admin = create_apps(TOKEN, HOSTS)
        headers = {"authorization": authorization} if authorization else {}
        transport = httpx.ASGITransport(admin)
        async with httpx.AsyncClient(transport=transport, base_url=base, headers=headers) as c:
            put = await c.put("/-/backends", json={"stable": STABLE})
            get = await c.get("/-/stats")
        return put.status_code, get.status_code, admin.state.router.backends

    put, get, configured = asyncio.run(main())

    assert (put, get) == (status, status)
    assert (configured is not None) == (status == 200)


def test_client_forwarding_headers_are_replaced_not_passed_on() -> None:
    seen: list[httpx.Headers] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers)
        return streamed(200, b"ok")

    async def scenario(router: Clients) -> None:
        forged = {
            "x-forwarded-for": "6.6.6.6",
            "forwarded": "for=6.6.6.6",
            "x-real-ip": "6.6.6.6",
            "x-forwarded-host": "bank.test",
        }
        await router.traffic.get("/", headers=forged)

    with_router(handle, {}, scenario)

    assert seen[0].get_list("x-forwarded-for") == ["127.0.0.1"]  # the address the router saw
    assert not {"forwarded", "x-real-ip", "x-forwarded-host"} & set(seen[0])


def test_path_and_query_are_forwarded_as_sent() -> None:
    async def scenario(router: Clients) -> httpx.Response:
        return await router.traffic.get("/a%2Fb/c?x=1&y=%20")

    answer = with_router(backend(200), {}, scenario)

    assert answer.headers["x-seen-path"] == "/a%2Fb/c?x=1&y=%20"
