"""Building Feishu-shaped requests for tests, with the sandbox's own sender code."""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sandbox.crypto import encrypt
from sandbox.sender import EventSender, SenderConfig
from sandbox.server import start_in_thread
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_VERIFICATION_TOKEN, SandboxConfig, SandboxState


def sender(encrypt_key: str = SANDBOX_ENCRYPT_KEY, token: str = SANDBOX_VERIFICATION_TOKEN) -> EventSender:
    return EventSender(SenderConfig(webhook_url="http://unused.invalid", encrypt_key=encrypt_key,
                                    verification_token=token))


def text_message_event(s: EventSender, text: str = "/ping", *, event_id: str | None = None,
                       event_type: str = "im.message.receive_v1", message_id: str | None = None) -> dict:
    return s.envelope(event_type, {
        "sender": {"sender_id": {"open_id": "ou_test"}, "sender_type": "user", "tenant_key": "t"},
        "message": {
            "message_id": message_id or f"om_{secrets.token_hex(8)}",
            "chat_id": "oc_test", "chat_type": "p2p", "message_type": "text",
            "content": json.dumps({"text": text}), "create_time": "1700000000000",
        },
    }, event_id=event_id)


def challenge_body(token: str = SANDBOX_VERIFICATION_TOKEN, *, encrypt_key: str | None = None,
                   challenge: str = "ch-123") -> bytes:
    doc: dict[str, Any] = {"challenge": challenge, "token": token, "type": "url_verification"}
    if encrypt_key:
        return json.dumps({"encrypt": encrypt(json.dumps(doc), encrypt_key)}).encode()
    return json.dumps(doc).encode()


# Every fault knob issue 14 added, at once (with the older rate limits and server errors):
# gateways answer HTML 502s and reset connections, IM throttles sends per chat (230020) and per
# service (11232), users recall cards, and tables change while they are paged.
# Each gateway fault also fires on the next call (`_count`), so every run meets all of them.
EVERY_FAULT = {"rate_limit": 0.03, "server_error": 0.03, "html_502": 0.03, "reset": 0.03,
               "throttle_chat": 0.2, "throttle_tenant": 0.1, "recall_cards": 0.5,
               "html_502_count": 1, "reset_count": 1, "throttle_chat_count": 1, "throttle_tenant_count": 1,
               "paging_churn": {"add": 2, "delete": 2, "pages": 20}}


@contextmanager
def running_sandbox(config: SandboxConfig) -> Iterator[tuple[str, SandboxState]]:
    """A sandbox of a test's own (its own mode, re-send schedule, ack timeout), stopped after."""
    server = start_in_thread(config)
    state: SandboxState = server.app.extensions["sandbox"]  # type: ignore[attr-defined]
    try:
        yield f"http://127.0.0.1:{server.server_port}", state
    finally:
        state.sender.close()
        server.shutdown()


def wait_until(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.1,
               state: Callable[[], object] | None = None):
    """Poll until `predicate` is truthy (returning its value); else fail naming what was awaited
    and, if given, the state that explains why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}"
                         + (f"; state: {state()}" if state else ""))
