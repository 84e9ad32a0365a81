"""A real lark-oapi long-connection client, run as a subprocess by tests (the SDK's event loop is
a module-level global, so one client per process), pointed at the sandbox by `--domain`.

It reports on stdout, one JSON object a line:

- `{"kind": "connected", "device_id"}` / `{"kind": "disconnected"}` — from the SDK's own log;
- `{"kind": "ping"}` / `{"kind": "pong"}` — the SDK's debug log lines "ping success" / "receive pong";
- `{"kind": "config", "ping_interval"}` — when the client's PingInterval changes (read from the
  client: the SDK applies a pong's ClientConfig silently);
- `{"kind": "event", "event_id", "event_type"}` — each event its handler ran (before the ack);
- `{"kind": "card", "event_id", "value"}` — each card.action.trigger, answered with a toast;
- `{"kind": "error", "type", "code", "msg"}` — `start()` raised (then the process exits 3);
- `{"kind": "log", "level", "msg"}` — the SDK's warnings and errors.

Event types handled: `im.message.receive_v1`, `sandbox.probe_v1` (customized), and
`sandbox.fails_v1`, whose handler raises (the SDK acks 500). Card callbacks answer
`{"toast": {"type": "success", "content": "pressed <value's "action">"}}`.
"""

from __future__ import annotations

import argparse
import json
import logging
import re
import sys
import threading
import time
from typing import Any

import lark_oapi as lark
from lark_oapi.event.callback.model.p2_card_action_trigger import P2CardActionTriggerResponse
from lark_oapi.ws import Client

_out = threading.Lock()


def say(kind: str, **fields: Any) -> None:
    with _out:
        sys.stdout.write(json.dumps({"kind": kind, **fields}, ensure_ascii=False) + "\n")
        sys.stdout.flush()


class _SdkLog(logging.Handler):
    """Turns the SDK's log lines that tests wait on into reports."""

    CONNECTED = re.compile(r"connected to \S+device_id=(\d+)")

    def emit(self, record: logging.LogRecord) -> None:
        text = record.getMessage()
        found = self.CONNECTED.search(text)
        if found and not text.startswith("disconnected"):
            say("connected", device_id=found.group(1))
        elif text.startswith("disconnected") or text.startswith("receive message loop exit"):
            say("disconnected", msg=text[:200])
        elif text.startswith("ping success"):
            say("ping")
        elif text.startswith("receive pong"):
            say("pong")
        elif record.levelno >= logging.WARNING:
            say("log", level=record.levelname, msg=text[:300])


def _handler() -> lark.EventDispatcherHandler:
    def on_event(data: Any) -> None:
        say("event", event_id=data.header.event_id, event_type=data.header.event_type)

    def fails(data: Any) -> None:
        say("event", event_id=data.header.event_id, event_type=data.header.event_type)
        raise RuntimeError("this handler always fails")

    def on_card(data: Any) -> P2CardActionTriggerResponse:
        value = data.event.action.value
        say("card", event_id=data.header.event_id, value=value)
        action = value.get("action") if isinstance(value, dict) else value
        return P2CardActionTriggerResponse({"toast": {"type": "success", "content": f"pressed {action}"}})

    return (lark.EventDispatcherHandler.builder("", "")
            .register_p2_im_message_receive_v1(on_event)
            .register_p2_customized_event("sandbox.probe_v1", on_event)
            .register_p2_customized_event("sandbox.fails_v1", fails)
            .register_p2_card_action_trigger(on_card)
            .build())


def _watch_ping_interval(client: Client) -> None:
    seen = None
    while True:
        current = client._ping_interval  # the SDK exposes no accessor
        if current != seen:
            seen = current
            say("config", ping_interval=current)
        time.sleep(0.05)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--domain", required=True)
    parser.add_argument("--app-id", required=True)
    parser.add_argument("--app-secret", required=True)
    args = parser.parse_args()
    sdk_log = logging.getLogger("Lark")
    for existing in list(sdk_log.handlers):
        sdk_log.removeHandler(existing)  # the SDK's own handler prints to stdout
    sdk_log.addHandler(_SdkLog())
    client = Client(args.app_id, args.app_secret, event_handler=_handler(), domain=args.domain,
                    log_level=lark.LogLevel.DEBUG)
    threading.Thread(target=_watch_ping_interval, args=(client,), daemon=True).start()
    try:
        client.start()  # blocks for good
    except Exception as exc:
        say("error", type=type(exc).__name__, code=getattr(exc, "code", None), msg=str(exc))
        return 3
    return 0


if __name__ == "__main__":
    sys.exit(main())
