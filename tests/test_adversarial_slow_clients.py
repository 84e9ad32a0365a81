"""Adversarial: slow-body clients must not starve the webhook (issue 15, item 3).

128 sockets each sending 2 of 100 announced bytes held every thread of the gthread web process,
and 14 of 20 real events timed out. The web process now reads bodies in asyncio, whole and under
WEB_BODY_TIMEOUT_SECONDS, before a thread runs Flask (bot/processes/asgi.py). The first tests
drive that front directly; the last one attacks the real web process (gunicorn, as `web`/`up`/
the Procfile start it) with ten times more slow sockets than it has threads.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import requests

from bot.processes.asgi import WholeBodies
from sandbox.sender import EventSender, SenderConfig
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN
from tests.export_helpers import wait_for
from tests.helpers import text_message_event
from tests.slow_clients import SlowClients
from tests.stack import BridgeStack


class _App:
    """An ASGI app that records what it was handed."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    async def __call__(self, scope, receive, send) -> None:
        message = await receive()
        self.bodies.append(message["body"])
        assert message["more_body"] is False
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})


def _drive(front: WholeBodies, messages: list[dict] | None, headers=()) -> list[dict]:
    """Run one request through the front; `None` messages = a client that never finishes."""
    sent: list[dict] = []

    async def receive():
        if messages:
            return messages.pop(0)
        await asyncio.Event().wait()  # a client that stalls forever

    async def send(message):
        sent.append(message)

    scope = {"type": "http", "headers": list(headers)}
    asyncio.run(asyncio.wait_for(front(scope, receive, send), 10))  # a hang fails, not blocks
    return sent


def test_a_body_sent_in_pieces_reaches_the_app_whole():
    app = _App()
    front = WholeBodies(app, timeout=5, max_bytes=100)
    pieces = [{"type": "http.request", "body": b"ab", "more_body": True},
              {"type": "http.request", "body": b"cd", "more_body": False}]
    sent = _drive(front, pieces)
    assert app.bodies == [b"abcd"]
    assert sent[0]["status"] == 200


def test_a_body_that_stalls_is_answered_408_and_never_reaches_the_app():
    app = _App()
    front = WholeBodies(app, timeout=0.2, max_bytes=100)
    sent = _drive(front, [{"type": "http.request", "body": b"{\"", "more_body": True}])
    assert app.bodies == []
    start = sent[0]
    assert start["status"] == 408
    assert (b"connection", b"close") in start["headers"]
    assert json.loads(sent[1]["body"]) == {"code": 408, "msg": "request body not received within 0.2 s"}


def test_a_chunk_that_meets_the_timeout_does_not_let_the_client_escape_it():
    """gunicorn's receive() awaits its own wait_for, which on Python 3.11 swallows a cancellation
    that meets an arriving chunk and returns the chunk. The front must still answer 408 then,
    not go on reading a body that trickles forever (the slow-client test below hung on it)."""
    app = _App()
    front = WholeBodies(app, timeout=0.2, max_bytes=10_000)
    received = 0

    async def receive():
        nonlocal received
        received += 1
        if received == 1:
            return {"type": "http.request", "body": b"{\"", "more_body": True}
        try:
            await asyncio.sleep(0.5 if received == 2 else 0.05)  # the 2nd outlasts the timeout
        except asyncio.CancelledError:
            if received > 2:
                raise
            # the 2nd: a chunk arrived in the same loop turn as the cancellation, and wins
        return {"type": "http.request", "body": b" ", "more_body": True}

    sent: list[dict] = []

    async def send(message):
        sent.append(message)

    asyncio.run(asyncio.wait_for(front({"type": "http", "headers": []}, receive, send), 5))
    assert app.bodies == []
    assert sent[0]["status"] == 408
    assert received == 2  # the 408 went out as soon as the swallowed cancellation returned


def test_an_announced_body_over_the_limit_is_refused_before_it_is_read():
    app = _App()
    front = WholeBodies(app, timeout=5, max_bytes=100)
    sent = _drive(front, None, headers=[(b"content-length", b"101")])
    assert sent[0]["status"] == 413
    assert app.bodies == []


def test_a_streamed_body_over_the_limit_is_refused():
    app = _App()
    front = WholeBodies(app, timeout=5, max_bytes=100)
    sent = _drive(front, [{"type": "http.request", "body": b"x" * 60, "more_body": True},
                          {"type": "http.request", "body": b"x" * 60, "more_body": False}])
    assert sent[0]["status"] == 413
    assert app.bodies == []


def test_a_client_that_leaves_mid_body_gets_nothing_and_costs_nothing():
    app = _App()
    front = WholeBodies(app, timeout=5, max_bytes=100)
    sent = _drive(front, [{"type": "http.request", "body": b"{", "more_body": True},
                          {"type": "http.disconnect"}])
    assert sent == [] and app.bodies == []


@pytest.mark.slow
def test_slow_bodies_on_every_thread_do_not_stop_real_events(tmp_path: Path, redis_url: str):
    """2 threads, 20 slow sockets trickling forever: real events are still answered, and the
    slow sockets are cut with 408 once WEB_BODY_TIMEOUT_SECONDS passes.

    Before (gthread, a thread per body being read): every event waited behind the slow sockets
    and timed out."""
    stack = BridgeStack(tmp_path, f"sqlite:///{tmp_path / 'bridge.db'}", redis_url,
                        "http://127.0.0.1:9", web_workers=1, web_threads=2, workers=0,
                        extra_env={"WEB_BODY_TIMEOUT_SECONDS": "5"}).start()
    attack = SlowClients(stack.port, 20)
    sender = EventSender(SenderConfig(webhook_url=f"{stack.base_url}/webhook/event",
                                      encrypt_key=SANDBOX_ENCRYPT_KEY,
                                      verification_token=SANDBOX_VERIFICATION_TOKEN))
    try:
        attack.start()
        assert wait_for(lambda: all(sent > 2 for _, sent in attack.sockets), 60), \
            "every slow socket trickles"
        answers = []
        for i in range(20):
            doc = text_message_event(sender, "hello", event_id=f"slow-{i}")
            body, headers = sender.wire(doc, encrypted=i % 2 == 0)
            answers.append(requests.post(sender.config.webhook_url, data=body, headers=headers,
                                         timeout=30).status_code)
        assert answers == [200] * 20
        assert wait_for(lambda: attack.answered_408 >= 20, 60), "slow sockets are answered 408"
    finally:
        attack.stop()
        sender.close()
        stack.stop()
