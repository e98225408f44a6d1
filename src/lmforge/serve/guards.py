"""ASGI middleware that refuses a request before any route runs: API key (401), body size (413)."""

from __future__ import annotations

import hmac
from typing import Any, Callable

from starlette.responses import JSONResponse

OPEN_PATHS = {"/health"}  # liveness probes carry no key


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """The OpenAI error shape, so official clients raise their usual exceptions."""
    return {"error": {"message": message, "type": kind, "code": status}}


class ApiKey:
    """Require `Authorization: Bearer KEY`; compared in constant time."""

    def __init__(self, app: Any, key: str | None):
        self.app, self.key = app, key.encode() if key else None

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in OPEN_PATHS:
            return await self.app(scope, receive, send)
        header = dict(scope["headers"]).get(b"authorization", b"")
        scheme, _, given = header.partition(b" ")
        if scheme.lower() == b"bearer" and hmac.compare_digest(given.strip(), self.key):
            return await self.app(scope, receive, send)
        response = JSONResponse(error_body(401, "missing or wrong API key (Authorization: Bearer KEY)",
                                           "authentication_error"), 401, headers={"WWW-Authenticate": "Bearer"})
        await response(scope, receive, send)


class BodyLimit:
    """Refuse bodies over `limit` bytes, whether declared (Content-Length) or chunked.

    The body is read up front, stopping as soon as it is too long, then replayed to the app.
    """

    def __init__(self, app: Any, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            return await self._refuse(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            more = message.get("more_body", False)
            if size > self.limit:
                return await self._refuse(scope, receive, send)
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if replayed:
                return await receive()  # later reads wait for the client's disconnect, as usual
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _refuse(self, scope: dict, receive: Callable, send: Callable) -> None:
        message = f"request body is over the limit of {self.limit} bytes (max_body_bytes)"
        await JSONResponse(error_body(413, message, "invalid_request_error"), 413)(scope, receive, send)
