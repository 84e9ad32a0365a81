"""Accepting one authentic event, whichever way it came (webhook or long connection).

Both transports end the same way: the event is recorded as a durable receipt (and, for the
types we handle, queued) before Feishu is told it arrived, a re-delivery is recognised by its
event_id, and the same counters move. Only the answer's wire form differs, so it is left to the
caller: an HTTP status for the webhook, an acknowledgement frame for the long connection.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bot.intake.parse import ParsedEvent, Reason, ShapeError, event_from_plain
from bot.intake.recorder import Recorder, StorageUnavailable
from bot.intake.routes import HANDLED_TYPES
from bot.metrics import EVENTS_DUPLICATE, EVENTS_RECEIVED, EVENTS_REJECTED, EVENTS_UNAVAILABLE

log = logging.getLogger(__name__)

# A card callback's answer is shown to the clicker; the work itself runs in a worker.
CARD_TOAST: dict[str, Any] = {"toast": {"type": "info", "content": "已收到，正在处理…"}}
CARD_CALLBACK = "card.action.trigger"


class Outcome(StrEnum):
    NEW = "new"  # recorded (and queued, or left for the sweeper while Redis is down)
    DUPLICATE = "duplicate"  # recorded before: a re-delivery
    UNAVAILABLE = "unavailable"  # not recorded: Feishu must deliver it again


@dataclass(frozen=True)
class Acknowledgement:
    """What the long connection sends back for one event: 200 once it is durably recorded
    (anything else and Feishu sends it again), with a card callback's answer as data."""

    code: int
    data: Any = None


def accept(recorder: Recorder, event: ParsedEvent, *, handled: bool) -> Outcome:
    """Record the event durably; blocks until its batch is committed."""
    try:
        recorded = recorder.record(event, handled=handled)
    except (StorageUnavailable, TimeoutError) as exc:
        EVENTS_UNAVAILABLE.inc()
        log.error("cannot record event receipt", extra={"event_id": event.event_id, "error": str(exc)})
        return Outcome.UNAVAILABLE
    if recorded.receipt_id is None:
        EVENTS_DUPLICATE.labels(event.event_type).inc()
        return Outcome.DUPLICATE
    EVENTS_RECEIVED.labels(event.event_type).inc()
    return Outcome.NEW


def answer_for(event: ParsedEvent) -> dict[str, Any] | None:
    """What Feishu shows for an accepted event: a card callback's toast, else nothing."""
    return CARD_TOAST if event.event_type == CARD_CALLBACK else None


def acknowledge(recorder: Recorder, payload: bytes) -> Acknowledgement:
    """An event from the long connection, accepted as the webhook accepts one. Over the connection
    there is no signature to check (the connection itself is authenticated with the app secret),
    so the SDK hands the plain event over; it is validated and recorded the same way."""
    try:
        doc = json.loads(payload)
        if not isinstance(doc, dict):
            raise ShapeError("the event must be a JSON object")
        event = event_from_plain(doc)
    except (ValueError, RecursionError) as exc:  # ShapeError is a ValueError
        # Sending junk again will not mend it: acknowledge, count and log it, as the webhook's 400.
        reason = Reason.SHAPELESS if isinstance(exc, ShapeError) else Reason.NOT_JSON
        EVENTS_REJECTED.labels(reason.value).inc()
        log.info("long connection event refused", extra={"reason": reason.value, "detail": str(exc)[:200]})
        return Acknowledgement(200)
    outcome = accept(recorder, event, handled=event.event_type in HANDLED_TYPES)
    if outcome is Outcome.UNAVAILABLE:
        return Acknowledgement(500)  # not recorded: Feishu re-sends it
    return Acknowledgement(200, answer_for(event))
