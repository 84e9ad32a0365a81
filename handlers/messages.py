"""`im.message.receive_v1`: chat messages sent to the bot."""

from __future__ import annotations

import logging
from typing import Any

from bot.export.catch import from_event
from bot.services import Services
from handlers.chat import on_text

log = logging.getLogger(__name__)


def on_message_receive(services: Services, event_doc: dict[str, Any]) -> str:
    """Catch the contract bot's export files; run chat commands (handlers/chat.py)."""
    event = event_doc.get("event") or {}
    message = event.get("message") or {}
    completion = from_event(event, services.settings)
    if completion is not None:
        from jobs.export import on_completion_message

        new = on_completion_message(services, completion, "event")
        return "export file queued for download" if new else "export file already seen"
    if message.get("message_type") != "text":
        return "ignored: not a text message"
    if (event.get("sender") or {}).get("sender_type") == "app":
        return "ignored: sent by an app"
    return on_text(services, event)
