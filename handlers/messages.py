"""`im.message.receive_v1`: a message in one of the bot's own chats — a chat command (bot/chat).

The contract bot's "export complete" files never come this way: the app's bot is not in the
user's chat with the contract bot, so Feishu sends no event for them; bot/export polls that chat."""

from __future__ import annotations

from typing import Any

from bot.chat.commands import on_text
from bot.services import Services


def on_message_receive(services: Services, event_doc: dict[str, Any]) -> str:
    event = event_doc.get("event") or {}
    message = event.get("message") or {}
    if message.get("message_type") != "text":
        return "ignored: not a text message"
    if (event.get("sender") or {}).get("sender_type") == "app":
        return "ignored: sent by an app"
    return on_text(services, event)
