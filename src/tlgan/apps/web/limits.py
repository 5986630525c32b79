"""ASGI middleware that refuses request bodies over a size limit with 413, before any parsing."""

from __future__ import annotations

import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


class BodyLimit:
    """Reads the whole body (bounded by ``max_bytes``) and hands it on; larger bodies get 413.

    A declared Content-Length over the limit is refused without reading; a
    chunked body is refused as soon as it grows past the limit.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], max_bytes: int, overrides: dict[str, int] | None = None) -> None:
        self.app, self.max_bytes = app, max_bytes
        self.overrides = dict(overrides or {})   # exact path -> its own limit (e.g. photo uploads)

    async def _refuse(self, send: Send, size: str, limit: int) -> None:
        body = json.dumps({"detail": f"request body too large ({size}); the limit is {limit} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.overrides.get(scope.get("path", ""), self.max_bytes)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await self._refuse(send, f"{int(declared)} bytes", limit)
            return
        chunks, total = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            total += len(chunk)
            if total > limit:
                await self._refuse(send, f"more than {limit} bytes", limit)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
