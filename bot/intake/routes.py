"""Which Feishu event types the bridge acts on, and the handler that runs for each.

Handlers live in `handlers/` and are named here by their dotted path, the way jobs are named
in `bot.queue.Jobs`: the webhook needs only the types (any other authentic event is recorded as
`unhandled` and answered 200), the worker imports the handler by name. A new event type is one
line here plus its function in `handlers/` (docs/architecture.md has the worked example).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rq.utils import import_attribute

if TYPE_CHECKING:
    from bot.services import Services

EventHandler = Callable[["Services", dict[str, Any]], str]

EVENT_HANDLERS: dict[str, str] = {
    "im.message.receive_v1": "handlers.messages.on_message_receive",
    "drive.file.bitable_record_changed_v1": "handlers.bitable.on_record_changed",
    "drive.file.bitable_field_changed_v1": "handlers.bitable.on_field_changed",
    "card.action.trigger": "handlers.cards.on_card_action",
}

HANDLED_TYPES: frozenset[str] = frozenset(EVENT_HANDLERS)


@functools.cache
def handler_for(event_type: str) -> EventHandler | None:
    name = EVENT_HANDLERS.get(event_type)
    return import_attribute(name) if name else None  # type: ignore[return-value]
