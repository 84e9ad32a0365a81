"""Event jobs through a real RQ worker, the real SDK and the sandbox."""

from __future__ import annotations

import json
from datetime import timedelta

from rq import Queue, SimpleWorker
from rq.registry import FailedJobRegistry
from sqlalchemy import select, update

from bot import receipts
from bot.intake import ParsedEvent
from bot.models import EventReceipt, utcnow
from bot.queue import enqueue_event
from jobs.maintenance import sweep_receipts
from tests.helpers import sender, text_message_event


def _record_ping(services, state, text="/ping", event_id="ev-1") -> tuple[int, str]:
    user_message = state.add_user_message("oc_chat", "ou_user", json.dumps({"text": text}))
    doc = text_message_event(sender(), text, event_id=event_id, message_id=user_message.message_id)
    doc["header"].pop("token")
    receipt_id = receipts.record(services.engine, ParsedEvent(event_id, "im.message.receive_v1", "2.0", doc))
    return receipt_id, user_message.message_id


def _work(services) -> None:
    SimpleWorker([services.queues["default"]], connection=services.redis).work(burst=True)


def _receipt(services, receipt_id) -> EventReceipt:
    with services.sessions() as session:
        return session.get(EventReceipt, receipt_id)


def test_ping_is_answered_pong_through_the_sdk(services, sandbox):
    _, state = sandbox
    receipt_id, message_id = _record_ping(services, state)
    enqueue_event(services.queues["default"], receipt_id, [0])
    _work(services)
    [reply] = [m for m in state.bot_sent if m.parent_id == message_id]
    assert json.loads(reply.content) == {"text": "pong"}
    assert reply.msg_type == "text"
    row = _receipt(services, receipt_id)
    assert (row.status, row.attempts, row.last_error) == ("done", 1, None)
    assert row.processed_at is not None


def test_a_second_job_for_the_same_receipt_does_nothing(services, sandbox):
    _, state = sandbox
    receipt_id, _ = _record_ping(services, state)
    queue = services.queues["default"]
    enqueue_event(queue, receipt_id, [0])
    queue.enqueue("jobs.events.process_event", receipt_id)  # e.g. the sweeper raced the original
    _work(services)
    replies = [c for c in state.api_calls if c["path"].endswith("/reply")]
    assert len(replies) == 1
    assert _receipt(services, receipt_id).attempts == 1


def test_non_commands_are_done_without_replying(services, sandbox):
    _, state = sandbox
    receipt_id, _ = _record_ping(services, state, text="hello there")
    enqueue_event(services.queues["default"], receipt_id, [0])
    _work(services)
    assert state.bot_sent == []
    assert _receipt(services, receipt_id).status == "done"


def test_failures_are_retried_then_visible_as_failed(services, sandbox, redis_conn):
    _, state = sandbox
    receipt_id, message_id = _record_ping(services, state)
    state.faults.update({"server_error": 1.0})
    queue = services.queues["default"]
    job = enqueue_event(queue, receipt_id, [0, 0])  # two retries, no delay
    _work(services)
    row = _receipt(services, receipt_id)
    assert row.status == "failed"
    assert row.attempts == 3
    assert "code=1500" in row.last_error
    registry = FailedJobRegistry(queue=queue)
    assert job.id in registry.get_job_ids()
    assert "FeishuAPIError" in queue.fetch_job(job.id).latest_result().exc_string

    # once Feishu recovers, re-queueing the failed job completes it
    state.faults.update({"server_error": 0.0})
    registry.requeue(job.id)
    _work(services)
    assert _receipt(services, receipt_id).status == "done"
    assert [json.loads(m.content)["text"] for m in state.bot_sent if m.parent_id == message_id] == ["pong"]


def test_retry_intervals_come_from_settings(services):
    job = enqueue_event(services.queues["default"], 1, [10, 30, 120])
    assert job.retries_left == 3
    assert job.retry_intervals == [10, 30, 120]


def test_sweeper_requeues_unqueued_and_abandoned_receipts(services, sandbox, redis_conn):
    _, state = sandbox
    never_queued, m1 = _record_ping(services, state, event_id="ev-a")
    abandoned, m2 = _record_ping(services, state, event_id="ev-b")
    fresh, _ = _record_ping(services, state, event_id="ev-c")
    long_ago = utcnow() - timedelta(hours=2)
    with services.engine.begin() as conn:
        conn.execute(update(EventReceipt).where(EventReceipt.id == never_queued).values(received_at=long_ago))
        conn.execute(update(EventReceipt).where(EventReceipt.id == abandoned)
                     .values(received_at=long_ago, status="processing", claimed_at=long_ago, attempts=1))
    assert sweep_receipts() == 2  # `fresh` is within the grace period
    assert sweep_receipts() == 0  # their jobs are queued now: not enqueued twice
    assert Queue("default", connection=redis_conn).count == 2
    _work(services)
    with services.sessions() as session:
        statuses = dict(session.execute(select(EventReceipt.id, EventReceipt.status)).all())
    assert statuses[never_queued] == "done" and statuses[abandoned] == "done"
    assert statuses[fresh] == "received"
    assert {m.parent_id for m in state.bot_sent} == {m1, m2}
