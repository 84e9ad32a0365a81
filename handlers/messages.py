"""`im.message.receive_v1`: chat messages sent to the bot."""

from __future__ import annotations

import logging
from typing import Any

from bot.export.catch import from_event
from bot.im import reply_text
from bot.services import Services
from handlers.commands import parse, text_of_message

log = logging.getLogger(__name__)


def on_message_receive(services: Services, event_doc: dict[str, Any]) -> str:
    """Catch the contract bot's export files; answer `/ping` with `pong` (the full command set
    arrives with the chat-commands issue)."""
    event = event_doc.get("event") or {}
    message = event.get("message") or {}
    completion = from_event(event, services.settings)
    if completion is not None:
        from jobs.export import on_completion_message

        new = on_completion_message(services, completion, "event")
        return "export file queued for download" if new else "export file already seen"
    if message.get("message_type") != "text":
        return "ignored: not a text message"
    command = parse(text_of_message(message.get("content")))
    if command is None:
        return "ignored: not a command"
    if command.name == "ping":
        reply_text(services.feishu, message["message_id"], "pong")
        return "replied pong"
    return f"ignored: unknown command /{command.name}"
