"""`card.action.trigger`: a button on one of the bot's cards was clicked (bot/chat/buttons.py)."""

from __future__ import annotations

from typing import Any

from bot.chat.buttons import on_click
from bot.services import Services


def on_card_action(services: Services, event_doc: dict[str, Any]) -> str:
    return on_click(services, event_doc)
