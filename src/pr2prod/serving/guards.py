"""Protections in front of the API: request size and type checks, one-line client-error logs."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from typing import Any

from pydantic import ValidationError
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from pr2prod.serving.contract import quoted_name

Scope = dict[str, Any]


class RequestGuard:
    """ASGI middleware: 413 for bodies over `max_bytes`, 415 for bodies that are not JSON.

    BentoML reads whole bodies without a limit, and a request body it cannot decode
    (e.g. multipart without a boundary) ends in a 500. The API only takes JSON, so
    anything else is refused here, before it is parsed, with a message saying why. The
    body is read here, whether it declares its length or comes in chunks, so an oversized
    one is a 413 either way.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        content_type = headers.get(b"content-type", b"application/json").decode("latin-1")
        if content_type.split(";")[0].strip().lower() != "application/json":
            await _refuse(
                send,
                415,
                f"Content-Type '{quoted_name(content_type)}' is not supported; send JSON "
                "with Content-Type: application/json",
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        # A chunked body declares no length: read it here, up to the limit, and hand BentoML
        # what was read. Refusing from inside BentoML's own read ends in its catch-all 500.
        try:
            body = await _read_body(receive, self.max_bytes)
        except _TooLarge:
            await self._too_large(send)
            return
        except _Disconnected:
            return  # the client left before sending its body: nobody to answer
        await self.app(scope, _replay(body, receive), send)

    async def _too_large(self, send: Any) -> None:
        message = f"request body larger than {self.max_bytes} bytes; send fewer records"
        await _refuse(send, 413, message)


async def _refuse(send: Any, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _read_body(receive: Any, max_bytes: int) -> bytes:
    parts: list[bytes] = []
    received = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise _Disconnected
        part = message.get("body", b"")
        received += len(part)
        if received > max_bytes:
            raise _TooLarge
        parts.append(part)
        if not message.get("more_body", False):
            return b"".join(parts)


def _replay(body: bytes, receive: Any) -> Any:
    """An ASGI `receive` giving the body already read, then the client's own messages."""
    replayed = False

    async def replaying_receive() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return await receive()  # e.g. http.disconnect while the model is busy
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replaying_receive


class _TooLarge(Exception):
    pass


class _Disconnected(Exception):
    pass


class KnownPathsOnly:
    """ASGI wrapper around the whole app: 404 for any path the service does not serve.

    BentoML's request metrics label every request with its raw path, unknown ones
    included, so each made-up path became new series in every metric file and on
    /metrics (2,000 of them: 21 MB to render, past the canary's scrape timeout). Refused
    out here, outside BentoML's middleware, an unknown path reaches no metric, no access
    log and no handler.

    Internal paths (/metrics) are refused the same way to requests that came through a
    proxy: the local router sets X-Forwarded-For, a client cannot take it off, and the
    scraper and the canary controller ask the pod directly.
    """

    def __init__(self, app: Any, paths: Iterable[str], internal: Iterable[str] = ()) -> None:
        self.app = app
        self.paths = frozenset(paths)
        self.internal = frozenset(internal)

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket") or self._serves(scope):
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            await _refuse(send, 404, "no such endpoint; see /docs.json for the API")
        else:
            await send({"type": "websocket.close", "code": 1008})

    def _serves(self, scope: Scope) -> bool:
        path = scope["path"]
        if path in self.internal:
            names = {name.lower() for name, _ in scope.get("headers") or []}
            return not names & _PROXY_HEADERS
        return path in self.paths


_PROXY_HEADERS = {b"x-forwarded-for", b"forwarded"}


def served_paths(routes: Iterable[BaseRoute], prefix: str = "") -> set[str]:
    """Every path the routes answer: route paths, mounted apps' routes, static files."""
    paths: set[str] = set()
    for route in routes:
        if isinstance(route, Mount):
            inner = getattr(route.app, "routes", None)
            if inner is not None:
                paths |= served_paths(inner, prefix + route.path)
            elif isinstance(route.app, StaticFiles):
                paths |= _static_files(route.app, prefix + route.path)
        elif isinstance(route, Route):
            if route.param_convertors:
                # A parameter matches unboundedly many paths; this list cannot hold it.
                raise ValueError(f"route {route.path} takes path parameters")
            paths.add(prefix + route.path)
    return paths


def _static_files(app: StaticFiles, prefix: str) -> set[str]:
    paths = set()
    for directory in app.all_directories:
        for folder, _, files in os.walk(directory):
            relative = os.path.relpath(folder, directory).replace(os.sep, "/")
            base = prefix if relative == "." else f"{prefix}/{relative}"
            paths.update(f"{base}/{name}" for name in files)
    return paths


class ClientErrorLogFilter(logging.Filter):
    """Turn BentoML's error-with-traceback log of a bad request into one warning line.

    A 4xx is the client's mistake, not the server's: it deserves a line saying what was
    wrong, not a stack trace at ERROR level that buries real failures.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            # Names in `loc` come from the client: quoted, so they cannot forge or flood lines.
            problems = "; ".join(
                f"{'.'.join(quoted_name(str(part)) for part in item['loc'])}: {item['msg']}"
                for item in error.errors()[:5]
            )
            record.msg = f"{record.getMessage()}: client error: {problems}"
            record.args = ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_client_errors() -> None:
    logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())
