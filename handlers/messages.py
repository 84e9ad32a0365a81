"""`im.message.receive_v1`: a message the bot can see — the contract bot's "export complete"
file (bot/export), or a chat command (bot/chat)."""

from __future__ import annotations

from typing import Any

from bot.chat.commands import on_text
from bot.export.catch import from_event
from bot.export.steps import on_completion_message
from bot.services import Services


def on_message_receive(services: Services, event_doc: dict[str, Any]) -> str:
    event = event_doc.get("event") or {}
    message = event.get("message") or {}
    completion = from_event(event, services.settings)
    if completion is not None:
        new = on_completion_message(services, completion, "event")
        return "export file queued for download" if new else "export file already seen"
    if message.get("message_type") != "text":
        return "ignored: not a text message"
    if (event.get("sender") or {}).get("sender_type") == "app":
        return "ignored: sent by an app"
    return on_text(services, event)
