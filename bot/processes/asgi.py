"""What the web process serves: the Flask app behind an asyncio front that reads each request
body whole, under a deadline, before a thread runs Flask.

Why: under gunicorn's thread workers a thread read the body, so 128 sockets each sending 2 of
100 announced bytes held every thread and starved the webhook (issue 15). Under gunicorn's
asyncio worker (`asgi`) a slow client costs a coroutine, not a thread; a body not received
within WEB_BODY_TIMEOUT_SECONDS is answered 408 and its connection closed, and one announced
beyond the app's MAX_CONTENT_LENGTH is answered 413 before it is read. a2wsgi then runs the
Flask app on WEB_THREADS threads per process. A reverse proxy that buffers bodies is still
the production topology (README, "Deployment"); this keeps a bare `up` standing without one.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from a2wsgi import WSGIMiddleware
from flask import Flask

from bot.config import Settings, load_settings

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class _BodyTooLarge(Exception):
    pass


class _ClientGone(Exception):
    pass


class WholeBodies:
    """ASGI middleware: the app sees a request only once its body has arrived whole."""

    def __init__(self, app: ASGIApp, *, timeout: float, max_bytes: int) -> None:
        self.app, self.timeout, self.max_bytes = app, timeout, max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if _announced_length(scope) > self.max_bytes:
            await _answer(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        try:
            body = await asyncio.wait_for(self._read(receive), self.timeout)
        except TimeoutError:
            await _answer(send, 408, f"request body not received within {self.timeout:g} s")
            return
        except _BodyTooLarge:
            await _answer(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        except _ClientGone:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive) -> bytes:
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                raise _BodyTooLarge
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


def _announced_length(scope: Scope) -> int:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return 0  # the server's parser refuses a malformed length itself
    return 0


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the buffered body, then defers to the connection's."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _answer(send: Send, status: int, reason: str) -> None:
    """The Flask app's error shape ({"code", "msg"}), and the connection closed afterwards."""
    body = json.dumps({"code": status, "msg": reason}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def serve(flask_app: Flask, settings: Settings) -> ASGIApp:
    """A Flask app as the web process serves it (bench/bare_app.py's ceiling too)."""
    wsgi = WSGIMiddleware(flask_app, workers=settings.web_threads)
    return WholeBodies(wsgi, timeout=settings.web_body_timeout_seconds,
                       max_bytes=flask_app.config["MAX_CONTENT_LENGTH"] or 1 << 20)


def create_asgi_app(settings: Settings | None = None) -> ASGIApp:
    """The web process's app (gunicorn: `bot.processes.asgi:create_asgi_app()`)."""
    from bot.app import create_app

    settings = settings or load_settings()
    return serve(create_app(settings), settings)
