"""Event handlers, run by workers (never in the webhook request).

Each handler takes the process's Services and the recorded event (the schema 2.0 document,
verification token removed). `REGISTRY` maps Feishu event types to them; the webhook
accepts any authentic event, but only these types are enqueued for processing.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from bot.services import Services
from handlers.bitable import on_field_changed, on_record_changed
from handlers.cards import on_card_action
from handlers.messages import on_message_receive

EventHandler = Callable[[Services, dict[str, Any]], str]

REGISTRY: dict[str, EventHandler] = {
    "im.message.receive_v1": on_message_receive,
    "drive.file.bitable_record_changed_v1": on_record_changed,
    "drive.file.bitable_field_changed_v1": on_field_changed,
    "card.action.trigger": on_card_action,
}
