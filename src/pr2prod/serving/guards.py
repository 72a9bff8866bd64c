"""Protections in front of the API: request size and type checks, one-line client-error logs."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

Scope = dict[str, Any]


class RequestGuard:
    """ASGI middleware: 413 for bodies over `max_bytes`, 415 for bodies that are not JSON.

    BentoML reads whole bodies without a limit, and a request body it cannot decode
    (e.g. multipart without a boundary) ends in a 500. The API only takes JSON, so
    anything else is refused here, before it is parsed, with a message saying why.
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
                f"Content-Type {content_type!r} is not supported; send JSON "
                "with Content-Type: application/json",
            )
            return
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large(send)
            return
        received = 0

        async def counting_receive() -> dict[str, Any]:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send)
        except _TooLarge:
            await self._too_large(send)

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


class _TooLarge(Exception):
    pass


class ClientErrorLogFilter(logging.Filter):
    """Turn BentoML's error-with-traceback log of a bad request into one warning line.

    A 4xx is the client's mistake, not the server's: it deserves a line saying what was
    wrong, not a stack trace at ERROR level that buries real failures.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, ValidationError):
            problems = "; ".join(
                f"{'.'.join(map(str, item['loc']))}: {item['msg']}" for item in error.errors()[:5]
            )
            record.msg = f"{record.getMessage()}: client error: {problems}"
            record.args = ()
            record.levelno, record.levelname = logging.WARNING, "WARNING"
            record.exc_info = record.exc_text = None
        return True


def quiet_client_errors() -> None:
    logging.getLogger("bentoml._internal.server.http_app").addFilter(ClientErrorLogFilter())
