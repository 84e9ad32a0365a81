"""What the web process serves: the Flask app behind an asyncio front that reads each request
body whole, under a deadline, before a thread runs Flask.

Why: under gunicorn's thread workers a thread read the body, so 128 sockets each sending 2 of
100 announced bytes held every thread and starved the webhook (issue 15). Under gunicorn's
asyncio worker (`asgi`) a slow client costs a coroutine, not a thread; a body not received
within WEB_BODY_TIMEOUT_SECONDS is answered 408 and its connection closed, and one announced
beyond the app's MAX_CONTENT_LENGTH is answered 413 before it is read. `FlaskOnThreads` then
runs the Flask app on WEB_THREADS threads per process. A reverse proxy that buffers bodies is
still the production topology (README, "Deployment"); this keeps a bare `up` standing without
one.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from a2wsgi.wsgi import build_environ
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
        deadline = asyncio.get_running_loop().time() + self.timeout
        try:
            body = await asyncio.wait_for(self._read(receive, deadline), self.timeout)
        except TimeoutError:
            await _answer(send, 408, f"request body not received within {self.timeout:g} s")
            return
        except _BodyTooLarge:
            await _answer(send, 413, f"request body larger than {self.max_bytes} bytes")
            return
        except _ClientGone:
            return
        await self.app(scope, _replay(body, receive), send)

    async def _read(self, receive: Receive, deadline: float) -> bytes:
        """The body, whole; TimeoutError once `deadline` has passed.

        The deadline is checked here too, not only by the caller's wait_for: on Python 3.11 a
        cancellation that meets a chunk arriving in the same loop turn is swallowed by the
        wait_for inside gunicorn's receive(), which returns the chunk instead, and wait_for then
        waits for this coroutine to finish. A client trickling a byte a second in step with the
        timeout escaped the 408 for as long as it kept trickling (CI saw it, stop 22).
        """
        loop = asyncio.get_running_loop()
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if loop.time() >= deadline:
                raise TimeoutError
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


STREAM_CHUNK = 256 * 1024  # a response bigger than this (rq-dashboard's assets) is sent in pieces


class FlaskOnThreads:
    """ASGI app running a WSGI app on a thread pool, with one hand-off per request.

    Why not a2wsgi's WSGIMiddleware: it streams the body into the thread and hands every
    response message back to the event loop separately; bench/intake.py measured that at less
    than half the requests per second of gunicorn's thread worker. Here the body is already
    whole (WholeBodies), and the thread returns the status, headers and first STREAM_CHUNK of
    the body in one go; only a longer response goes back to a thread for more.
    """

    def __init__(self, app: Callable[..., Iterable[bytes]], threads: int) -> None:
        self.app = app
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="web")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            self.pool.shutdown(wait=False, cancel_futures=True)
            return
        if scope["type"] != "http":
            return  # no websockets here
        body = (await receive()).get("body", b"")
        environ = build_environ(scope, io.BytesIO(body))  # type: ignore[arg-type]
        # The body is whole (WholeBodies): say so, chunked requests included, or Werkzeug
        # would read a request without Content-Length as empty.
        environ["CONTENT_LENGTH"] = str(len(body))
        environ["wsgi.input_terminated"] = True
        response = _Response(self.app, environ)
        step = self.pool.submit(response.start)
        try:
            chunk, more = await asyncio.wrap_future(step)
            await send({"type": "http.response.start", "status": response.status,
                        "headers": response.headers})
            while more:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                step = self.pool.submit(response.read)
                chunk, more = await asyncio.wrap_future(step)
            await send({"type": "http.response.body", "body": chunk})
        finally:
            # Cancelled (the client left) while a thread still runs the app: close after it,
            # on its thread, never beside it.
            if not response.closed:
                step.add_done_callback(lambda _: response.close())


class _Response:
    """One WSGI response, driven from a pool thread."""

    def __init__(self, app: Callable[..., Iterable[bytes]], environ: dict[str, Any]) -> None:
        self.app, self.environ = app, environ
        self.status, self.headers = 500, []
        self.closed = False
        self.headers_sent = False
        self._written: list[bytes] = []

    def start(self) -> tuple[bytes, bool]:
        self._iterable = self.app(self.environ, self._start_response)
        self._chunks = iter(self._iterable)
        first = self.read()
        self.headers_sent = True  # the caller sends them with this first piece
        return first

    def _start_response(self, status: str, headers: list[tuple[str, str]], exc_info: Any = None):
        if exc_info is not None and self.headers_sent:
            raise exc_info[1].with_traceback(exc_info[2])  # PEP 3333: too late to change them
        self.status = int(status.split(" ", 1)[0])
        self.headers = [(name.strip().lower().encode("latin1"), value.strip().encode("latin1"))
                        for name, value in headers]
        return self._write

    def _write(self, data: bytes) -> None:
        """WSGI's legacy write(): sent before what the iterable yields next."""
        self._written.append(data)

    def read(self) -> tuple[bytes, bool]:
        """Up to about STREAM_CHUNK more bytes, and whether more may follow."""
        parts, self._written = self._written, []
        size = sum(map(len, parts))
        for chunk in self._chunks:
            parts.append(chunk)
            size += len(chunk)
            if size >= STREAM_CHUNK:
                return b"".join(parts), True
        self.close()
        return b"".join(parts + self._written), False

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        close = getattr(getattr(self, "_iterable", None), "close", None)
        if close is not None:
            close()


async def _lifespan(receive: Receive, send: Send) -> None:
    """Nothing to start or stop: the Flask app was built before the worker served."""
    while (await receive())["type"] != "lifespan.shutdown":
        await send({"type": "lifespan.startup.complete"})
    await send({"type": "lifespan.shutdown.complete"})


def serve(flask_app: Flask, settings: Settings) -> ASGIApp:
    """A Flask app as the web process serves it (bench/bare_app.py's ceiling too)."""
    return WholeBodies(FlaskOnThreads(flask_app, settings.web_threads),
                       timeout=settings.web_body_timeout_seconds,
                       max_bytes=flask_app.config["MAX_CONTENT_LENGTH"] or 1 << 20)


def create_asgi_app(settings: Settings | None = None) -> ASGIApp:
    """The web process's app (gunicorn: `bot.processes.asgi:create_asgi_app()`)."""
    from bot.app import create_app

    settings = settings or load_settings()
    return serve(create_app(settings), settings)
