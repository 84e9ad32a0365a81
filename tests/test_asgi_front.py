"""The web process's front (bot/processes/asgi.py) runs Flask on threads: what Flask answers is
what the client gets — status, headers, a body of any size, streamed ones included — and every
response's iterable is closed."""

from __future__ import annotations

import asyncio

from flask import Flask, Response, jsonify, request

from bot.processes.asgi import STREAM_CHUNK, FlaskOnThreads, WholeBodies

closed: list[str] = []


def _app() -> Flask:
    app = Flask("front")

    @app.post("/echo")
    def echo():
        return jsonify(body=request.get_data(as_text=True), remote=request.remote_addr,
                       query=request.args.get("q"), scheme=request.scheme)

    @app.get("/big")
    def big():
        def pieces():
            try:
                for i in range(40):
                    yield bytes([65 + i % 26]) * 65536  # 40 × 64 KiB: several STREAM_CHUNKs
            finally:
                closed.append("big")
        return Response(pieces(), mimetype="application/octet-stream", headers={"X-Kind": "stream"})

    @app.get("/legacy")
    def legacy():
        def wsgi(environ, start_response):
            write = start_response("200 OK", [("Content-Type", "text/plain")])
            write(b"written ")
            return [b"yielded"]
        return wsgi

    @app.get("/boom")
    def boom():
        raise RuntimeError("kaput")

    return app


def _request(method: str, path: str, body: bytes = b"", query: bytes = b"",
             chunked: bool = False) -> list[dict]:
    front = WholeBodies(FlaskOnThreads(_app(), threads=4), timeout=5, max_bytes=1 << 20)
    sent: list[dict] = []
    messages = [{"type": "http.request", "body": body, "more_body": False}]

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "method": method, "path": path, "root_path": "", "query_string": query,
             "http_version": "1.1", "scheme": "https", "server": ("127.0.0.1", 8000),
             "client": ("10.1.2.3", 5555),
             "headers": [(b"host", b"bridge.example"), (b"content-type", b"text/plain"),
                         (b"transfer-encoding", b"chunked") if chunked
                         else (b"content-length", str(len(body)).encode())]}
    asyncio.run(asyncio.wait_for(front(scope, receive, send), 30))
    return sent


def test_a_request_reaches_flask_as_sent_and_its_answer_comes_back():
    sent = _request("POST", "/echo", b"hello", b"q=1")
    assert sent[0]["status"] == 200
    assert (b"content-type", b"application/json") in sent[0]["headers"]
    assert sent[-1].get("more_body", False) is False
    body = b"".join(m.get("body", b"") for m in sent[1:])
    assert body.startswith(b"{") and b'"body":"hello"' in body
    assert b'"remote":"10.1.2.3"' in body and b'"query":"1"' in body and b'"scheme":"https"' in body


def test_a_long_response_is_streamed_in_pieces_whole_and_closed():
    closed.clear()
    sent = _request("GET", "/big")
    pieces = [m["body"] for m in sent[1:]]
    assert len(pieces) > 2  # not one 2.5 MiB message
    assert all(len(p) <= STREAM_CHUNK + 65536 for p in pieces)
    assert b"".join(pieces) == b"".join(bytes([65 + i % 26]) * 65536 for i in range(40))
    assert (b"x-kind", b"stream") in sent[0]["headers"]
    assert closed == ["big"]


def test_an_error_in_a_view_is_flasks_error_page_not_a_dropped_connection():
    sent = _request("GET", "/boom")
    assert sent[0]["status"] == 500


def test_a_chunked_body_reaches_flask_whole():
    """Before: no Content-Length, and Werkzeug read the body as empty."""
    body = b"".join(m.get("body", b"") for m in _request("POST", "/echo", b"chunked hello", chunked=True)[1:])
    assert b'"body":"chunked hello"' in body


def test_what_an_app_writes_comes_before_what_it_yields():
    sent = _request("GET", "/legacy")
    assert b"".join(m.get("body", b"") for m in sent[1:]) == b"written yielded"
