"""Everything a request must pass: the API key (401) and body size (413) as ASGI middleware before
any route runs; then, in the routes, the model and its capability (404/400), input counts and
emptiness (422), and admission to the batch queue (429 when full, 504 past the timeout)."""

from __future__ import annotations

import asyncio
import hmac
from typing import Any, Callable, Collection

from fastapi import FastAPI, HTTPException, Request
from starlette.responses import JSONResponse

from lmforge.data.validate import text_problem
from lmforge.serve.batcher import QueueFull
from lmforge.serve.engine import Engine

OPEN_PATHS = {"/health"}  # liveness probes carry no key


def error_body(status: int, message: str, kind: str) -> dict[str, Any]:
    """The OpenAI error shape, so official clients raise their usual exceptions."""
    return {"error": {"message": message, "type": kind, "code": status}}


class ApiKey:
    """Require `Authorization: Bearer KEY` on every path but `open_paths`; compared in constant time."""

    def __init__(self, app: Any, key: str | None, open_paths: Collection[str] = OPEN_PATHS):
        self.app, self.key, self.open_paths = app, key.encode() if key else None, frozenset(open_paths)

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.key is None or scope["type"] != "http" or scope["path"] in self.open_paths:
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


async def submit(request: Request, item: Any) -> Any:
    """Queue one item for the batch worker: 429 when the queue is full, 504 past the timeout."""
    try:
        return await request.app.state.batcher.submit(item, request.app.state.limits["timeout_s"])
    except QueueFull:
        raise HTTPException(429, "the server is busy (request queue full, max_queue); retry later") from None
    except asyncio.TimeoutError:
        raise HTTPException(504, "the model did not answer within the timeout (timeout_s)") from None


def check_model(engine: Engine, name: str | None, able: bool, needs: str) -> None:
    """404 for another model's name; 400 when this model cannot do what the endpoint does (`able`,
    one of the engine's capabilities)."""
    if name is not None and name != engine.name:
        raise HTTPException(404, f"model '{name}' not found; this server serves '{engine.name}'")
    if not able:
        raise HTTPException(400, f"'{engine.name}' is a {engine.kind} model; this endpoint needs {needs}")


def check_count(n: int, limit: int, what: str = "inputs") -> None:
    if n > limit:
        raise HTTPException(422, f"{n} {what} is over the limit of {limit} (max_inputs)")


def check_texts(app: FastAPI, given: str | list[str]) -> list[str]:
    """The request's texts as a list: 422 when there are none, too many, or an empty one."""
    texts = [given] if isinstance(given, str) else given
    check_count(len(texts), app.state.limits["max_inputs"])
    if not texts:
        raise HTTPException(422, "input is an empty list")
    for i, text in enumerate(texts):
        problem = text_problem(text)
        if problem:
            raise HTTPException(422, f"input {i}: {problem}")
    return texts
