"""The service's path gate: which paths it lets through to the app, in-process."""

from __future__ import annotations

from pathlib import Path

import anyio
import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from pr2prod.serving.guards import KnownPathsOnly, served_paths


def answer(_: object) -> PlainTextResponse:
    return PlainTextResponse("ok")


def app_with_static(folder: Path) -> Starlette:
    (folder / "css").mkdir()
    (folder / "css" / "ui.css").write_text("body {}")
    return Starlette(
        routes=[
            Route("/predict", answer, methods=["POST"]),
            Route("/metrics", answer),
            Mount("/static", StaticFiles(directory=folder)),
            Mount("/", Starlette(routes=[Route("/model", answer)])),
        ]
    )


def test_the_served_paths_are_routes_mounted_routes_and_static_files(tmp_path: Path) -> None:
    app = app_with_static(tmp_path)

    assert served_paths(app.routes) == {"/predict", "/metrics", "/static/css/ui.css", "/model"}


def test_a_route_with_a_path_parameter_cannot_be_listed() -> None:
    with pytest.raises(ValueError, match="path parameters"):
        served_paths([Route("/items/{name}", answer)])


def statuses(app: object, requests: list[tuple[str, str, dict]]) -> list[int]:
    async def send_all() -> list[int]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://service") as client:
            return [
                (await client.request(method, path, headers=headers)).status_code
                for method, path, headers in requests
            ]

    return anyio.run(send_all)


def test_only_served_paths_reach_the_app_and_metrics_only_directly(tmp_path: Path) -> None:
    app = app_with_static(tmp_path)
    gated = KnownPathsOnly(app, served_paths(app.routes), internal={"/metrics"})
    proxied = {"X-Forwarded-For": "203.0.113.7"}

    found = statuses(
        gated,
        [
            ("GET", "/model", {}),
            ("GET", "/static/css/ui.css", {}),
            ("GET", "/static/css/other.css", {}),
            ("POST", "/predict/", {}),
            ("GET", "/metrics", {}),
            ("GET", "/metrics", proxied),
            ("GET", "/model", proxied),
        ],
    )

    assert found == [200, 200, 404, 404, 200, 404, 200]
