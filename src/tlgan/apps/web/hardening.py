"""ASGI middleware for every response: ``X-Content-Type-Options: nosniff``, and a Host check against DNS rebinding.

A page on another site can make a browser send requests to 127.0.0.1 under a
name it controls (DNS rebinding); they arrive with that name in the Host
header. A server bound to loopback only ever has a legitimate reason to see
local names, so it refuses the rest (403). Bound to another address (``tlgan
serve --host 0.0.0.0``) it is meant to be reached under any name, and answers all.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Awaitable, Callable

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def host_name(header: str) -> str:
    """The name in a Host header, without port or IPv6 brackets, lower-cased ('[::1]:80' -> '::1')."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header[1:]
    name = header.rsplit(":", 1)[0] if header.count(":") == 1 else header
    return name[:-1] if name.endswith(".") else name   # 'localhost.' is the fully qualified 'localhost'


def is_local_name(name: str) -> bool:
    """True for 'localhost', names under '.localhost', and loopback addresses (127.0.0.0/8, ::1)."""
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


class Hardening:
    """Adds ``X-Content-Type-Options: nosniff`` to every HTTP response; with ``local_only``, refuses
    requests whose Host header is not a local name with 403 and a one-line ``detail``.

    ``local_only`` is read on each request from ``settings`` (a dict), so ``serve`` can relax it
    after the app is built, when it knows which address it binds.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], settings: dict[str, Any]) -> None:
        self.app, self.settings = app, settings

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.settings.get("local_only", True):
            raw = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
            name = host_name(raw)
            if not is_local_name(name):
                body = json.dumps({"detail": f"host '{raw[:100]}' refused: this server answers only to localhost "
                                             "(start it with --host 0.0.0.0 to serve other names)"}).encode()
                await send({"type": "http.response.start", "status": 403, "headers": [
                    (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    (b"x-content-type-options", b"nosniff")]})
                await send({"type": "http.response.body", "body": body})
                return

        async def send_hardened(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-content-type-options"]
                message = {**message, "headers": [*headers, (b"x-content-type-options", b"nosniff")]}
            await send(message)

        await self.app(scope, receive, send_hardened)
