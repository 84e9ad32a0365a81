"""The long connection's intake (bot/intake/accept.py, keepalive.py): an event is acknowledged
only once its receipt is durable, with the webhook's answers; and when a connection is dead."""

from __future__ import annotations

import json
import random

from sqlalchemy import func, select

from bot.intake.accept import CARD_TOAST, Acknowledgement, acknowledge
from bot.intake.keepalive import check_every, is_silent, reconnect_delay
from bot.intake.recorder import Recorder
from bot.models import EventReceipt
from tests.helpers import sender, text_message_event


def _receipts(services) -> dict[str, str]:
    with services.engine.connect() as conn:
        return dict(conn.execute(select(EventReceipt.event_id, EventReceipt.status)).all())


def test_an_event_is_acknowledged_after_its_receipt_and_a_resend_once(services):
    recorder = Recorder(services)
    doc = text_message_event(sender(), "/ping", event_id="ev-ws-1")
    payload = json.dumps(doc).encode()
    assert acknowledge(recorder, payload) == Acknowledgement(200)
    assert _receipts(services) == {"ev-ws-1": "received"}
    assert acknowledge(recorder, payload) == Acknowledgement(200)  # Feishu re-sent it
    with services.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(EventReceipt)).scalar() == 1
    assert "token" not in json.dumps(json.loads(_payload(services, "ev-ws-1"))["header"])


def _payload(services, event_id: str) -> str:
    with services.engine.connect() as conn:
        return conn.execute(select(EventReceipt.payload).where(EventReceipt.event_id == event_id)).scalar()


def test_a_card_callback_is_answered_with_the_webhooks_toast(services):
    doc = sender().envelope("card.action.trigger", {"action": {"value": {"k": "v"}}}, event_id="ev-card")
    assert acknowledge(Recorder(services), json.dumps(doc).encode()) == Acknowledgement(200, CARD_TOAST)


def test_unhandled_types_are_recorded_as_such_and_junk_is_acknowledged_unrecorded(services):
    recorder = Recorder(services)
    other = sender().envelope("im.chat.updated_v1", {"chat_id": "oc_1"}, event_id="ev-other")
    assert acknowledge(recorder, json.dumps(other).encode()).code == 200
    for junk in (b"not json", b"[1]", json.dumps({"schema": "2.0", "header": {}}).encode(), b"[" * 100_000):
        assert acknowledge(recorder, junk) == Acknowledgement(200)  # re-sending would not mend it
    assert _receipts(services) == {"ev-other": "unhandled"}


def test_an_event_that_cannot_be_recorded_is_not_acknowledged(services):
    services.engine.dispose()
    with services.engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE event_receipts")
    doc = text_message_event(sender(), "/ping", event_id="ev-lost")
    assert acknowledge(Recorder(services), json.dumps(doc).encode()).code == 500  # Feishu re-sends


def test_a_connection_quiet_past_the_limit_is_silent():
    assert not is_silent(100.0, 100.0 + 120 * 1.5, 120, 1.5)
    assert is_silent(100.0, 100.0 + 120 * 1.5 + 0.01, 120, 1.5)
    # checks come often enough that silence is noticed well inside two ping intervals
    for ping in (1, 5, 30, 120):
        assert 1.5 * ping + check_every(ping) < 2 * ping


def test_reconnect_delays_grow_jittered_up_to_the_cap():
    rng = random.Random(7)
    delays = [[reconnect_delay(n, 60, rng) for _ in range(200)] for n in range(10)]
    assert max(delays[0]) <= 0.5 and max(delays[3]) <= 4 and max(delays[9]) <= 60
    assert max(delays[9]) > 30 and len({round(d, 3) for d in delays[5]}) > 150  # jittered, not lock step
