"""Delivers events to the app as Feishu does, re-delivering while the answer is not 200.

Feishu's own schedule after a non-200 answer is about 15 s, 5 min, 1 h and 6 h; tests pass a
compressed schedule. Every attempt is logged so tests can count and inspect them.

Two transports, as the app's subscription mode (订阅方式) says: `webhook` (an HTTP POST, optionally
encrypted and signed) or `websocket` (the long connection, sandbox/ws_server.py: plain JSON to
one connected client, its ack in place of the HTTP answer). Callers use `send`/`deliver_now`
alike in both modes; the attempt log, re-delivery and `wait_idle` are shared.

Also the legacy "message card request URL" (消息卡片请求网址) callbacks, which a new app should
not use but an old one may still have configured: a different body (no schema) and a different
signature — SHA-1 over timestamp + nonce + verification token + body, as lark-oapi's
`lark_oapi/card/action_handler.py` checks it — sent once, synchronously.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from sandbox.crypto import encrypt, sign

if TYPE_CHECKING:
    from concurrent.futures import Future

    from sandbox.ws_server import Delivery, LongConnectionServer

FEISHU_REDELIVERY_SCHEDULE = (15.0, 300.0, 3600.0, 21600.0)


@dataclass
class Attempt:
    event_id: str
    attempt: int
    status: int | None  # None: no HTTP answer (connection error, timeout)
    encrypted: bool
    latency_ms: float
    error: str | None = None
    at: float = field(default_factory=time.time)
    answer: str | None = None  # the webhook's response body (first 500 characters), or the
    # long connection's ack data (JSON text: a card callback's toast / card)
    transport: str = "webhook"  # or "websocket"
    connection: str | None = None  # websocket: the connection the attempt went to


@dataclass
class SenderConfig:
    webhook_url: str
    encrypt_key: str = ""
    verification_token: str = ""
    redelivery_schedule: Sequence[float] = FEISHU_REDELIVERY_SCHEDULE
    timeout: float = 10.0
    threads: int = 8
    event_mode: str = "webhook"  # or "websocket": the app's subscription mode


class EventSender:
    def __init__(self, config: SenderConfig, long_connection: LongConnectionServer | None = None) -> None:
        self.config = config
        self._long_connection = long_connection  # closed with the sender
        self._client = httpx.Client(timeout=config.timeout)
        self._pool = ThreadPoolExecutor(max_workers=config.threads, thread_name_prefix="sender")
        self._lock = threading.Lock()
        self._attempts: list[Attempt] = []
        self._pending = 0
        self._idle = threading.Condition(self._lock)
        self._timers: set[threading.Timer] = set()
        self._closed = False

    # -- building what goes on the wire -------------------------------------------------

    def envelope(self, event_type: str, event: dict[str, Any], *, event_id: str | None = None,
                 app_id: str = "cli_sandbox", tenant_key: str = "sandbox_tenant") -> dict[str, Any]:
        """A schema 2.0 envelope; Feishu puts the verification token in header.token."""
        return {
            "schema": "2.0",
            "header": {
                "event_id": event_id or secrets.token_hex(16),
                "token": self.config.verification_token,
                "create_time": str(int(time.time() * 1000)),
                "event_type": event_type,
                "tenant_key": tenant_key,
                "app_id": app_id,
            },
            "event": event,
        }

    def wire(self, document: dict[str, Any], *, encrypted: bool) -> tuple[bytes, dict[str, str]]:
        """Body and headers for one delivery: optionally encrypted, signed when a key is set."""
        plain = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        key = self.config.encrypt_key
        if encrypted:
            if not key:
                raise ValueError("cannot encrypt without an encrypt key")
            body = json.dumps({"encrypt": encrypt(plain, key)}).encode()
        else:
            body = plain.encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Feishu-Sandbox"}
        if key:
            timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
            headers |= {
                "X-Lark-Request-Timestamp": timestamp,
                "X-Lark-Request-Nonce": nonce,
                "X-Lark-Signature": sign(timestamp, nonce, key, body),
            }
        return body, headers

    def legacy_card_wire(self, document: dict[str, Any], *, encrypted: bool = False
                         ) -> tuple[bytes, dict[str, str]]:
        """Body and headers of a legacy message-card request. Clicks carry
        `X-Lark-Signature = hex(sha1(timestamp + nonce + verification_token + raw body))`; the
        legacy url_verification challenge goes unsigned (lark-oapi answers it before any check)."""
        plain = json.dumps(document, ensure_ascii=False, separators=(",", ":"))
        body = json.dumps({"encrypt": encrypt(plain, self.config.encrypt_key)}).encode() if encrypted \
            else plain.encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Feishu-Sandbox"}
        if document.get("type") != "url_verification":
            timestamp, nonce = str(int(time.time())), secrets.token_hex(8)
            digest = hashlib.sha1((timestamp + nonce + self.config.verification_token).encode() + body)
            headers |= {
                "X-Lark-Request-Timestamp": timestamp,
                "X-Lark-Request-Nonce": nonce,
                "X-Lark-Signature": digest.hexdigest(),
            }
        return body, headers

    # -- delivering ------------------------------------------------------------------

    def deliver_legacy_card(self, document: dict[str, Any], *, encrypted: bool = False) -> Attempt:
        """One synchronous legacy card request (a click, or the URL's challenge); never re-sent."""
        label = "url_verification" if document.get("type") == "url_verification" else \
            f"legacy-card:{document.get('token', '')}"
        body, headers = self.legacy_card_wire(document, encrypted=encrypted)
        return self._post(label, body, headers, encrypted, 1)

    def deliver_now(self, document: dict[str, Any], *, encrypted: bool, attempt: int = 1) -> Attempt:
        """One synchronous delivery attempt (no re-delivery), over the mode's transport."""
        if self._over_connection():
            return self._log_push(document, attempt, self._push(document))
        body, headers = self.wire(document, encrypted=encrypted)
        return self._post(_event_id(document), body, headers, encrypted, attempt)

    def _over_connection(self) -> bool:
        return self.config.event_mode == "websocket" and self._long_connection is not None

    def _push(self, document: dict[str, Any]) -> Future[Delivery]:
        """Over the long connection events go as plain JSON: no encryption, no signature (the
        SDK hands them to `_do_without_validation`)."""
        assert self._long_connection is not None
        payload = json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode()
        return self._long_connection.push(payload)

    def _log_push(self, document: dict[str, Any], attempt: int, pushed: Future[Delivery]) -> Attempt:
        """Wait for a push attempt's outcome and log it as an Attempt."""
        assert self._long_connection is not None
        try:
            done = pushed.result(timeout=self._long_connection.ack_timeout + 30)
            record = Attempt(_event_id(document), attempt, done.status, False, done.latency_ms,
                             error=done.error, answer=done.answer, transport="websocket",
                             connection=done.connection)
        except Exception:  # the server shut down under it (cancelled), or it hung
            record = Attempt(_event_id(document), attempt, None, False, 0.0, error="connection_lost",
                             transport="websocket")
        with self._lock:
            self._attempts.append(record)
        return record

    def _post(self, event_id: str, body: bytes, headers: dict[str, str], encrypted: bool,
              attempt: int) -> Attempt:
        started = time.perf_counter()
        try:
            response = self._client.post(self.config.webhook_url, content=body, headers=headers)
            record = Attempt(event_id, attempt, response.status_code, encrypted,
                             (time.perf_counter() - started) * 1000, answer=response.text[:500])
        except httpx.HTTPError as exc:
            record = Attempt(event_id, attempt, None, encrypted,
                             (time.perf_counter() - started) * 1000, error=type(exc).__name__)
        with self._lock:
            self._attempts.append(record)
        return record

    def send(self, document: dict[str, Any], *, encrypted: bool = True) -> None:
        """Deliver in the background, re-delivering on the schedule until a 200 or it runs out."""
        self._submit(document, encrypted, attempt=1)

    def _submit(self, document: dict[str, Any], encrypted: bool, attempt: int) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending += 1
        if self._over_connection():
            # No thread waits for the ack: many events may be in flight at once, as with Feishu.
            self._push(document).add_done_callback(
                lambda pushed: self._finish(document, encrypted, attempt,
                                            lambda: self._log_push(document, attempt, pushed)))
        else:
            self._pool.submit(self._finish, document, encrypted, attempt,
                              lambda: self.deliver_now(document, encrypted=encrypted, attempt=attempt))

    def _finish(self, document: dict[str, Any], encrypted: bool, attempt: int,
                deliver: Callable[[], Attempt]) -> None:
        """Run one attempt, then schedule the next while it is not a 200 and the schedule lasts."""
        try:
            result = deliver()
            schedule = self.config.redelivery_schedule
            if result.status != 200 and attempt <= len(schedule):
                self._schedule(document, encrypted, attempt + 1, schedule[attempt - 1])
        finally:
            with self._lock:
                self._pending -= 1
                self._idle.notify_all()

    def _schedule(self, document: dict[str, Any], encrypted: bool, attempt: int, delay: float) -> None:
        with self._lock:
            if self._closed:
                return
            self._pending += 1

        def fire() -> None:
            self._submit(document, encrypted, attempt)  # counted pending before we let go
            with self._lock:
                self._timers.discard(timer)
                self._pending -= 1
                self._idle.notify_all()

        timer = threading.Timer(delay, fire)
        timer.daemon = True
        with self._lock:
            self._timers.add(timer)
        timer.start()

    def wait_idle(self, timeout: float = 60.0) -> bool:
        """Block until no delivery is in flight or scheduled. False on timeout."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
        return True

    def attempts(self) -> list[Attempt]:
        with self._lock:
            return list(self._attempts)

    def clear(self) -> None:
        """Forget logged attempts (between test cases)."""
        with self._lock:
            self._attempts.clear()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            timers = list(self._timers)
        for timer in timers:
            timer.cancel()
        if self._long_connection is not None:
            self._long_connection.close()  # fails the attempts in flight (connection_lost)
        self._pool.shutdown(wait=True)
        self._client.close()


def _event_id(document: dict[str, Any]) -> str:
    header = document.get("header")
    if isinstance(header, dict) and isinstance(header.get("event_id"), str):
        return header["event_id"]
    return str(document.get("uuid", ""))
