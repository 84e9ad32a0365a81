"""What a test may tell the sandbox's long-connection server (issue 16), validated.

Pure: a JSON body in, a `KnobChanges` out, or a ValueError saying what is wrong (the control
endpoint answers it as a 400). Two kinds of knobs:

- the client settings Feishu hands out — in the discovery answer and, when they change, in the
  next pong (`ClientConfig`: PingInterval, ReconnectCount, ReconnectInterval, ReconnectNonce);
- faults Feishu's side can show: pings left unanswered (a connection that silently died), acks
  that arrive late (so events are re-sent: duplicate deliveries), connections dropped without
  a close frame.

Applied by sandbox/ws_server.py; the subscription mode (webhook or long connection) by the state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

EVENT_MODES = ("webhook", "websocket")  # Feishu's console: 订阅方式 (subscription mode)


@dataclass
class ClientSettings:
    """The `ClientConfig` Feishu sends; defaults as lark-oapi's own (Feishu's are the same)."""

    ping_interval: int = 120
    reconnect_count: int = -1  # -1: reconnect forever
    reconnect_interval: int = 120
    reconnect_nonce: int = 30

    def client_config(self) -> dict[str, int]:
        """All four fields, always: lark-oapi's `_configure` copies every one of them, so a
        pong naming only PingInterval would set the others to None and break its reconnect."""
        return {"ReconnectCount": self.reconnect_count, "ReconnectInterval": self.reconnect_interval,
                "ReconnectNonce": self.reconnect_nonce, "PingInterval": self.ping_interval}


# knob → (smallest value allowed); all whole seconds, as Feishu's ClientConfig carries them
SETTING_MINIMUMS = {"ping_interval": 1, "reconnect_count": -1, "reconnect_interval": 0, "reconnect_nonce": 0}
KNOBS = ("event_mode", *SETTING_MINIMUMS, "answer_pings", "connection", "ack_delay", "drop")
MAX_ACK_DELAY = 3600.0


@dataclass
class KnobChanges:
    event_mode: str | None = None
    settings: dict[str, int] = field(default_factory=dict)
    answer_pings: bool | None = None
    connection: str | None = None  # scopes `answer_pings` to one connection id
    ack_delay: float | None = None
    drop: str | None = None  # a connection id, "any" (one chosen at random) or "all"


def parse_knobs(body: Any) -> KnobChanges:
    """`body` (the POST's JSON) as changes; ValueError names the first thing wrong with it."""
    if not isinstance(body, dict) or not body:
        raise ValueError(f"a JSON object with any of: {', '.join(KNOBS)}")
    unknown = sorted(set(body) - set(KNOBS))
    if unknown:
        raise ValueError(f"unknown knob(s) {', '.join(unknown)}; known: {', '.join(KNOBS)}")
    changes = KnobChanges()
    if "event_mode" in body:
        if body["event_mode"] not in EVENT_MODES:
            raise ValueError(f"event_mode must be one of {', '.join(EVENT_MODES)}")
        changes.event_mode = body["event_mode"]
    for name, least in SETTING_MINIMUMS.items():
        if name in body:
            value = body[name]
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"{name} must be a whole number of seconds ≥ {least}")
            changes.settings[name] = value
    if "answer_pings" in body:
        if not isinstance(body["answer_pings"], bool):
            raise ValueError("answer_pings must be true or false")
        changes.answer_pings = body["answer_pings"]
    if "connection" in body:
        if "answer_pings" not in body:
            raise ValueError("connection scopes answer_pings: give both")
        changes.connection = _connection_id("connection", body["connection"])
    if "ack_delay" in body:
        value = body["ack_delay"]
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= MAX_ACK_DELAY:
            raise ValueError(f"ack_delay must be a number of seconds between 0 and {MAX_ACK_DELAY:g}")
        changes.ack_delay = float(value)
    if "drop" in body:
        changes.drop = _connection_id("drop", body["drop"])
    return changes


def _connection_id(name: str, value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"{name} must be a connection id (see GET /sandbox/long-connection)"
                         + (', "any" or "all"' if name == "drop" else ""))
    return value.strip()
