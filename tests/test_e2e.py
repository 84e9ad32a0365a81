"""End to end: gunicorn + a real Redis server + RQ workers + the sandbox delivering events."""

from __future__ import annotations

import json
import time

import pytest
from sqlalchemy import create_engine, text

from sandbox.events import message_receive
from sandbox.sender import EventSender, SenderConfig
from sandbox.state import SANDBOX_ENCRYPT_KEY, SANDBOX_TENANT_KEY, SANDBOX_VERIFICATION_TOKEN
from tests.stack import BridgeStack

pytestmark = pytest.mark.slow

N_EVENTS = 1000


def _wait_for(predicate, timeout: float, interval: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    return predicate()


def test_thousand_events_delivered_twice_are_handled_once(tmp_path, database_url, redis_conn,
                                                          redis_url, sandbox):
    base_url, state = sandbox
    stack = BridgeStack(tmp_path, database_url, redis_url, base_url).start()
    sender = EventSender(SenderConfig(
        webhook_url=f"{stack.base_url}/webhook/event", encrypt_key=SANDBOX_ENCRYPT_KEY,
        verification_token=SANDBOX_VERIFICATION_TOKEN, redelivery_schedule=(0.5, 1.0, 2.0), threads=16,
    ))
    engine = create_engine(database_url.replace("+psycopg", "+psycopg"))
    try:
        messages = []
        for i in range(N_EVENTS):
            message = state.add_user_message(f"oc_chat_{i % 7}", f"ou_user_{i % 13}",
                                             json.dumps({"text": "/ping"}))
            doc = sender.envelope("im.message.receive_v1",
                                  message_receive(message, chat_type="p2p", tenant_key=SANDBOX_TENANT_KEY),
                                  app_id=state.config.app_id)
            messages.append(message.message_id)
            encrypted = i % 2 == 0  # half encrypted, half plain (signed)
            sender.send(doc, encrypted=encrypted)
            sender.send(doc, encrypted=encrypted)  # Feishu's duplicate delivery
        assert sender.wait_idle(timeout=300)

        def all_done():
            with engine.connect() as conn:
                n = conn.execute(text("SELECT count(*) FROM event_receipts WHERE status = 'done'")).scalar()
            return n == N_EVENTS

        assert _wait_for(all_done, timeout=300), stack.log_text()[-3000:]

        attempts = sender.attempts()
        statuses = [a.status for a in attempts]
        assert len(attempts) == 2 * N_EVENTS  # nothing needed re-delivery
        assert all(s == 200 for s in statuses), {s: statuses.count(s) for s in set(statuses)}
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT status, attempts, count(*) FROM event_receipts "
                                     "GROUP BY status, attempts")).all()
        assert [tuple(r) for r in rows] == [("done", 1, N_EVENTS)]  # 1,000 receipts, each run once
        replies = [c for c in state.api_calls if c["path"].endswith("/reply") and c["status"] == 200]
        assert len(replies) == N_EVENTS  # 1,000 handler runs reached Feishu
        pongs = {}
        for m in state.bot_sent:
            pongs[m.parent_id] = pongs.get(m.parent_id, 0) + 1
            assert json.loads(m.content) == {"text": "pong"}
        assert set(pongs) == set(messages) and set(pongs.values()) == {1}
    finally:
        sender.close()
        stack.stop()
        engine.dispose()
