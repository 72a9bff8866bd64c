"""Protections in front of the API: a request-size limit and one-line client-error logs."""

from __future__ import annotations

import json
import logging
from typing import Any

from pydantic import ValidationError

Scope = dict[str, Any]


class BodySizeLimit:
    """ASGI middleware: answer 413 when a request body exceeds `max_bytes`.

    BentoML reads whole bodies without a limit; checking Content-Length first and
    counting streamed bytes stops an oversized request before it is parsed.
    """

    def __init__(self, app: Any, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
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
            await self._refuse(send)

    async def _refuse(self, send: Any) -> None:
        body = json.dumps(
            {"error": f"request body larger than {self.max_bytes} bytes; send fewer records"}
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
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
